//! The process's metrics, served on `/metrics` in Prometheus' text format.
//!
//! One registry per process, updated by the named events in
//! [`telemetry`](super) (business code never touches it). Counters,
//! gauges and histograms are kept by name and labels in ordered maps, so
//! the output is stable; label values are escaped as the format requires.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// Upper bounds of the duration histograms, in seconds.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Every metric ferry exports: name, type, help.
const METRICS: &[(&str, &str, &str)] = &[
    (
        "ferry_files_listed",
        "gauge",
        "Files of the job in its last listing (after its pattern).",
    ),
    (
        "ferry_files_unsettled",
        "gauge",
        "Files of the job not settled yet in its last poll (too young, still changing, or no marker).",
    ),
    (
        "ferry_files_settled_total",
        "counter",
        "File versions settled and new to the ledger, handed to staging.",
    ),
    (
        "ferry_files_loaded_total",
        "counter",
        "Files loaded and committed.",
    ),
    (
        "ferry_files_failed_total",
        "counter",
        "Files that failed (permanent failures are recorded in ferry_files).",
    ),
    (
        "ferry_files_skipped_total",
        "counter",
        "Listed files left alone because the ledger has them (loaded, failed before, or skipped).",
    ),
    (
        "ferry_rows_loaded_total",
        "counter",
        "Rows loaded into the target.",
    ),
    (
        "ferry_rows_rejected_total",
        "counter",
        "Records rejected (kept in ferry_load_errors and the rejects object).",
    ),
    (
        "ferry_bytes_loaded_total",
        "counter",
        "Source bytes of the files loaded.",
    ),
    (
        "ferry_bytes_fetched_total",
        "counter",
        "Bytes read from the sources, every attempt counted (with a work queue, what this replica fetched).",
    ),
    (
        "ferry_schema_changes_total",
        "counter",
        "Schema drift recorded in ferry_schema_changes: change (new_fields, missing_fields, misfit, added_column, widened_column) and the contract policy that acted (none without a contract).",
    ),
    (
        "ferry_stage_duration_seconds",
        "histogram",
        "Duration of each stage: stage (fetch, normalize, upload of one file), load (one batch transaction), pass (one poll of a job).",
    ),
    (
        "ferry_last_load_timestamp_seconds",
        "gauge",
        "Unix time of the job's last committed load.",
    ),
    (
        "ferry_oldest_unloaded_file_age_seconds",
        "gauge",
        "Age (by mtime) of the oldest file of the job on its source that is not loaded (waiting to settle, in a batch, or failed); 0 when none.",
    ),
    (
        "ferry_source_connections",
        "gauge",
        "Control connections open to the FTP/FTPS source now (idle and busy).",
    ),
    (
        "ferry_source_connection_limit",
        "gauge",
        "Control connections ferry keeps at most to the FTP/FTPS source: max_transfers, or fewer after the server refused one for a per-client limit.",
    ),
    (
        "ferry_build_info",
        "gauge",
        "Always 1; the version is a label.",
    ),
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Registry {
    values: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut r = Registry::default();
        r.values.insert(
            (
                "ferry_build_info",
                vec![("version", env!("CARGO_PKG_VERSION").to_string())],
            ),
            1.0,
        );
        Mutex::new(r)
    })
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Adds `by` to a counter.
pub fn add(name: &'static str, pairs: &[(&'static str, &str)], by: f64) {
    let mut r = registry().lock().expect("metrics lock");
    *r.values.entry((name, labels(pairs))).or_default() += by;
}

/// Sets a gauge.
pub fn set(name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
    let mut r = registry().lock().expect("metrics lock");
    r.values.insert((name, labels(pairs)), value);
}

/// Records one observation in a histogram.
pub fn observe(name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
    let mut r = registry().lock().expect("metrics lock");
    let h = r.histograms.entry((name, labels(pairs))).or_default();
    if h.counts.is_empty() {
        h.counts = vec![0; BUCKETS.len()];
    }
    for (i, bound) in BUCKETS.iter().enumerate() {
        if value <= *bound {
            h.counts[i] += 1;
        }
    }
    h.sum += value;
    h.count += 1;
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Every metric with a value, in Prometheus' text exposition format.
pub fn render() -> String {
    let r = registry().lock().expect("metrics lock");
    let mut out = String::new();
    for (name, kind, help) in METRICS {
        let values: Vec<_> = r.values.iter().filter(|((n, _), _)| n == name).collect();
        let histograms: Vec<_> = r
            .histograms
            .iter()
            .filter(|((n, _), _)| n == name)
            .collect();
        if values.is_empty() && histograms.is_empty() {
            continue;
        }
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for ((_, l), v) in values {
            out.push_str(&format!("{name}{} {}\n", label_text(l, None), number(*v)));
        }
        for ((_, l), h) in histograms {
            for (bound, n) in BUCKETS.iter().zip(&h.counts) {
                let le = Some(("le", number(*bound)));
                out.push_str(&format!("{name}_bucket{} {n}\n", label_text(l, le)));
            }
            let inf = Some(("le", "+Inf".to_string()));
            out.push_str(&format!(
                "{name}_bucket{} {}\n",
                label_text(l, inf),
                h.count
            ));
            out.push_str(&format!("{name}_sum{} {}\n", label_text(l, None), h.sum));
            out.push_str(&format!(
                "{name}_count{} {}\n",
                label_text(l, None),
                h.count
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_in_the_text_format() {
        add("ferry_files_loaded_total", &[("job", "a\"b")], 2.0);
        add("ferry_files_loaded_total", &[("job", "a\"b")], 1.0);
        set("ferry_files_listed", &[("job", "x")], 7.0);
        observe(
            "ferry_stage_duration_seconds",
            &[("job", "x"), ("stage", "load")],
            0.3,
        );
        observe(
            "ferry_stage_duration_seconds",
            &[("job", "x"), ("stage", "load")],
            2.0,
        );
        let text = render();
        assert!(
            text.contains("# TYPE ferry_files_loaded_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("ferry_files_loaded_total{job=\"a\\\"b\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("ferry_files_listed{job=\"x\"} 7\n"), "{text}");
        assert!(
            text.contains(
                "ferry_stage_duration_seconds_bucket{job=\"x\",stage=\"load\",le=\"0.25\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ferry_stage_duration_seconds_bucket{job=\"x\",stage=\"load\",le=\"0.5\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ferry_stage_duration_seconds_bucket{job=\"x\",stage=\"load\",le=\"+Inf\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("ferry_stage_duration_seconds_count{job=\"x\",stage=\"load\"} 2\n"));
        assert!(text.contains("ferry_build_info{version=\""));
    }
}
