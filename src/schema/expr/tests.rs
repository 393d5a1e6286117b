use super::*;
use crate::rng::XorShift;

/// Evaluates `text` over `fields` (name → value; missing names are NULL).
fn run(text: &str, fields: &[(&str, Option<&str>)]) -> Result<Option<String>, String> {
    let lookups = [teams()];
    let e = compile(text, &lookups).map_err(|e| e.to_string())?;
    let values: Vec<Option<&str>> = e
        .fields
        .iter()
        .map(|f| fields.iter().find(|(n, _)| n == f).and_then(|(_, v)| *v))
        .collect();
    let get = |i: usize| values[i].map(Cow::Borrowed);
    e.eval(&get).map(|v| v.map(|c| c.into_owned()))
}

fn teams() -> Arc<Lookup> {
    let l = Lookup::new("teams", "teams.csv");
    l.load_csv(b"user,team\nu1,core\nu2, web \n").unwrap();
    Arc::new(l)
}

fn ok(text: &str, fields: &[(&str, Option<&str>)]) -> Option<String> {
    run(text, fields).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn text_functions() {
    let f = [("status", Some("  In Progress ")), ("user", Some("u1"))];
    assert_eq!(
        ok("lower(trim(status))", &f).as_deref(),
        Some("in progress")
    );
    assert_eq!(ok("upper(user)", &f).as_deref(), Some("U1"));
    assert_eq!(
        ok("concat(user, '-', trim(status))", &f).as_deref(),
        Some("u1-In Progress")
    );
    assert_eq!(ok("concat(missing, 'x')", &f).as_deref(), Some("x"));
    assert_eq!(ok("concat(missing)", &f), None, "NULL when every part is");
    assert_eq!(
        ok("coalesce(missing, user, 'z')", &f).as_deref(),
        Some("u1")
    );
    assert_eq!(ok("substring('hello', 2, 3)", &f).as_deref(), Some("ell"));
    assert_eq!(ok("substring('hello', 0, 3)", &f).as_deref(), Some("he"));
    assert_eq!(ok("substring('héllo', 2)", &f).as_deref(), Some("éllo"));
    assert_eq!(ok("split_part('a/b/c', '/', 2)", &f).as_deref(), Some("b"));
    assert_eq!(ok("split_part('a/b/c', '/', 9)", &f).as_deref(), Some(""));
    assert_eq!(
        ok("regex_extract('JIRA-123 done', '([A-Z]+)-(\\d+)', 2)", &f).as_deref(),
        Some("123")
    );
    assert_eq!(ok("regex_extract('none', '\\d+')", &f), None);
    assert_eq!(
        ok("replace(user, 'u', 'user-')", &f).as_deref(),
        Some("user-1")
    );
    assert_eq!(ok("nullif(user, 'u1')", &f), None);
    assert_eq!(ok("'it''s'", &f).as_deref(), Some("it's"));
    assert_eq!(
        ok("\"Task Id\"", &[("Task Id", Some("t9"))]).as_deref(),
        Some("t9")
    );
}

#[test]
fn numbers_are_exact() {
    let f = [
        ("ms", Some("1234")),
        ("price", Some("19.99")),
        ("bad", Some("x")),
    ];
    assert_eq!(ok("ms / 1000", &f).as_deref(), Some("1.234"));
    assert_eq!(ok("price * 3", &f).as_deref(), Some("59.97"));
    assert_eq!(ok("0.1 + 0.2", &f).as_deref(), Some("0.3"));
    assert_eq!(ok("-(ms - 1300)", &f).as_deref(), Some("66"));
    assert_eq!(ok("1 + 2 * 3", &f).as_deref(), Some("7"));
    assert_eq!(ok("(1 + 2) * 3", &f).as_deref(), Some("9"));
    assert_eq!(ok("10 / 4", &f).as_deref(), Some("2.5"));
    assert_eq!(ok("ms + missing", &f), None, "NULL in, NULL out");
    assert!(run("ms / 0", &f).unwrap_err().contains("division by zero"));
    assert!(
        run("bad + 1", &f)
            .unwrap_err()
            .contains("\"x\" is not a number")
    );
}

#[test]
fn dates() {
    let f = [("at", Some("2026-03-01T10:42:17+02:00"))];
    assert_eq!(ok("date_part('year', at)", &f).as_deref(), Some("2026"));
    assert_eq!(
        ok("date_part('hour', at)", &f).as_deref(),
        Some("8"),
        "in UTC"
    );
    assert_eq!(
        ok("date_part('dow', at)", &f).as_deref(),
        Some("0"),
        "a Sunday"
    );
    assert_eq!(ok("date_part('quarter', at)", &f).as_deref(), Some("1"));
    assert_eq!(
        ok("date_trunc('day', at)", &f).as_deref(),
        Some("2026-03-01 00:00:00+00")
    );
    assert_eq!(
        ok("date_trunc('hour', at)", &f).as_deref(),
        Some("2026-03-01 08:00:00+00")
    );
    assert_eq!(
        ok("date_trunc('week', at)", &f).as_deref(),
        Some("2026-02-23 00:00:00+00")
    );
    assert_eq!(
        ok("date_trunc('quarter', '2026-05-17')", &f).as_deref(),
        Some("2026-04-01 00:00:00+00")
    );
    assert!(
        run("date_part('year', 'soon')", &f)
            .unwrap_err()
            .contains("not a timestamp")
    );
}

#[test]
fn hash_and_lookup() {
    let f = [
        ("a", Some("x")),
        ("b", Some("y")),
        ("u", Some("u2")),
        ("v", Some("u3")),
    ];
    let mut h = Sha256::new();
    h.update(b"x\x1fy");
    assert_eq!(ok("hash(a, b)", &f), Some(hex::encode(h.finalize())));
    assert_ne!(ok("hash(a, b)", &f), ok("hash(b, a)", &f));
    assert_eq!(ok("lookup('teams', u)", &f).as_deref(), Some("web"));
    assert_eq!(ok("lookup('teams', v)", &f), None);
    assert_eq!(
        ok("lookup('teams', v, 'unknown')", &f).as_deref(),
        Some("unknown")
    );
}

#[test]
fn errors_name_the_position() {
    let e = |t: &str| compile(t, &[teams()]).unwrap_err();
    assert_eq!(e("lower(status").at, 13);
    let unknown = e("trim(lowr(x))");
    assert_eq!(unknown.at, 6);
    assert!(
        unknown.reason.contains("unknown function lowr()"),
        "{unknown:?}"
    );
    let arity = e("lower(a, b)");
    assert_eq!(
        (arity.at, arity.reason.as_str()),
        (6, "lower() takes 1 arguments, not 2")
    );
    let re = e("regex_extract(x, '(')");
    assert_eq!(re.at, 18);
    assert!(re.reason.contains("not a regular expression"));
    let lk = e("lookup('nope', x)");
    assert_eq!(lk.at, 8);
    assert!(lk.reason.contains("defined: teams"), "{lk:?}");
    assert_eq!(e("date_part('fortnight', x)").at, 11);
    assert_eq!(e("'open").at, 1);
    assert_eq!(e("1 +").at, 4);
    assert_eq!(e("a b").at, 3);
    assert!(e(&"(".repeat(100)).reason.contains("nested"));
}

/// Random expressions from the grammar (and random text), over random
/// field values: compiling and evaluating never panics.
#[test]
fn random_expressions_over_random_strings_never_panic() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("expression fuzz seed {seed}");
    let mut rng = XorShift(seed);
    let atoms = [
        "a",
        "b",
        "\"c d\"",
        "'x'",
        "'2026-03-01T10:00:00Z'",
        "'12.5'",
        "0",
        "-3",
        "99999999999999999999",
        "0.000000000000000001",
        "''",
    ];
    let funcs: [(&str, usize); 14] = [
        ("lower", 1),
        ("upper", 1),
        ("trim", 1),
        ("concat", 3),
        ("coalesce", 2),
        ("substring", 3),
        ("regex_extract", 2),
        ("split_part", 3),
        ("replace", 3),
        ("nullif", 2),
        ("date_part", 2),
        ("date_trunc", 2),
        ("hash", 2),
        ("lookup", 2),
    ];
    fn make(rng: &mut XorShift, depth: u32, atoms: &[&str], funcs: &[(&str, usize)]) -> String {
        match rng.below(if depth > 3 { 1 } else { 4 }) {
            0 => atoms[rng.below(atoms.len() as u64) as usize].to_string(),
            1 => {
                let ops = ["+", "-", "*", "/"];
                format!(
                    "({} {} {})",
                    make(rng, depth + 1, atoms, funcs),
                    ops[rng.below(4) as usize],
                    make(rng, depth + 1, atoms, funcs)
                )
            }
            _ => {
                let (name, n) = funcs[rng.below(funcs.len() as u64) as usize];
                let args: Vec<String> = (0..n)
                    .map(|i| match (name, i) {
                        ("regex_extract", 1) => "'(\\w+)'".to_string(),
                        ("split_part" | "replace", 1) => "'-'".to_string(),
                        ("split_part" | "substring", 2) => format!("{}", rng.below(5)),
                        ("substring", 1) => format!("{}", rng.below(5)),
                        ("replace" | "nullif", _) if i > 0 => "'x'".to_string(),
                        ("date_part", 0) => "'doy'".to_string(),
                        ("date_trunc", 0) => "'month'".to_string(),
                        ("lookup", 0) => "'teams'".to_string(),
                        _ => make(rng, depth + 1, atoms, funcs),
                    })
                    .collect();
                format!("{name}({})", args.join(", "))
            }
        }
    }
    let random_text = |rng: &mut XorShift| -> String {
        let pool = [
            'a',
            'Z',
            '0',
            '9',
            '.',
            '-',
            '+',
            ' ',
            'é',
            '\u{1F600}',
            '\'',
            '"',
            '(',
            ')',
            ',',
            '/',
            ':',
            'T',
            '\0',
        ];
        (0..rng.below(24))
            .map(|_| pool[rng.below(pool.len() as u64) as usize])
            .collect()
    };
    let lookups = [teams()];
    let mut compiled = 0;
    for _ in 0..3000 {
        let text = if rng.below(4) == 0 {
            random_text(&mut rng)
        } else {
            make(&mut rng, 0, &atoms, &funcs)
        };
        let Ok(e) = compile(&text, &lookups) else {
            continue;
        };
        compiled += 1;
        for _ in 0..4 {
            let values: Vec<Option<String>> = e
                .fields
                .iter()
                .map(|_| (rng.below(5) > 0).then(|| random_text(&mut rng)))
                .collect();
            let get = |i: usize| values[i].as_deref().map(Cow::Borrowed);
            let _ = e.eval(&get);
        }
    }
    assert!(
        compiled > 1000,
        "the generator makes valid expressions ({compiled})"
    );
}
