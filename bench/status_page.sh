#!/usr/bin/env bash
# Status page render times with a large ledger: seeds ROWS file versions
# (three jobs; one file with 1000 rejected records), a load per 5 files
# spread over two days, and schema changes into a PostgreSQL schema of its
# own, starts `ferry run` (release build) on it with an empty local
# source, and times each page with curl: median and worst of REPEAT
# requests, in milliseconds. The database is PostgreSQL at
# $FERRY_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres);
# FERRY_BENCH_KEEP=1 keeps the schema afterwards (to EXPLAIN the queries).
#
#   bench/status_page.sh [ROWS] [REPEAT]      (defaults 100000, 20)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-100000}
REPEAT=${2:-20}
URL=${FERRY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SCHEMA=ferry_bench_status
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ferry-target}"
# The same build as bench/normalize.sh (an example brings the dev-dependencies
# into feature resolution), so the two share one release build.
cargo build --release --quiet --bin ferry --example gen_parquet --example limits
FERRY="$CARGO_TARGET_DIR/release/ferry"
work=$(mktemp -d /var/tmp/ferry-sbench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  [ -n "${FERRY_BENCH_KEEP:-}" ] || psql "$URL" -q -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/in"

host=$(python3 -c "import urllib.parse as u; p=u.urlparse('$URL'); print(p.hostname or '127.0.0.1', p.port or 5432, p.username or 'postgres', p.path.lstrip('/') or 'postgres')")
read -r pg_host pg_port pg_user pg_db <<<"$host"
{
  printf '[daemon]\npoll_interval = "1h"\nhttp_listen = "127.0.0.1:%s"\n' "$port"
  printf '[staging]\nbucket = "unused"\nendpoint = "http://127.0.0.1:9"\n'
  printf '[warehouse]\nkind = "postgres"\nhost = "%s"\nport = %s\nuser = "%s"\ndatabase = "%s"\nschema = "%s"\n' \
    "$pg_host" "$pg_port" "$pg_user" "$pg_db" "$SCHEMA"
  printf '[sources.s]\nkind = "local"\nroot = "%s"\n' "$work/in"
  for j in task-events vendor-events audit-events; do
    printf '[[jobs]]\nname = "%s"\nsource = "s"\npath = "/"\ntarget = "task_events"\nmode = "append"\n' "$j"
    printf 'columns = [ { name = "event_id", type = "varchar(64)" } ]\n'
  done
} > "$work/ferry.toml"

psql "$URL" -q -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null
"$FERRY" --config "$work/ferry.toml" migrate >/dev/null
echo "seeding $ROWS file versions …"
psql "$URL" -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET search_path = $SCHEMA;
INSERT INTO ferry_jobs (job, source, path, pattern, target, auto, updated_at)
SELECT j, 's', '/', '*', 'task_events', true, now()
FROM unnest(ARRAY['task-events', 'vendor-events', 'audit-events']) j
WHERE NOT EXISTS (SELECT 1 FROM ferry_jobs WHERE job = j);
INSERT INTO ferry_files (job, path, size, mtime, sha256, state, staged_key, rows_loaded, rows_rejected,
                         first_seen_at, loaded_at, load_id, error, rejects_key)
SELECT (ARRAY['task-events', 'vendor-events', 'audit-events'])[1 + i % 3],
       '/in/2026/12/file-' || lpad(i::text, 7, '0') || '.csv', 100000 + i, 1800000000 + i, md5(i::text) || md5(i::text),
       CASE WHEN i % 97 = 0 THEN 'failed' ELSE 'loaded' END,
       'staged/x/2026/12/07/file-' || i || '-v-a/', 1000, i % 3,
       now() - (i || ' seconds')::interval * (172800.0 / $ROWS),
       CASE WHEN i % 97 = 0 THEN NULL ELSE now() - (i || ' seconds')::interval * (172800.0 / $ROWS) END,
       CASE WHEN i % 97 = 0 THEN NULL ELSE 'load-' || (i / 5) END,
       CASE WHEN i % 97 = 0 THEN 'too many rejected records' END, NULL
FROM generate_series(1, $ROWS) i;
INSERT INTO ferry_loads (load_id, job, files, rows_loaded, bytes, started_at, finished_at, duration_ms)
SELECT 'load-' || k, (ARRAY['task-events', 'vendor-events', 'audit-events'])[1 + k % 3], 5, 5000, 500000,
       now() - (k * 5 || ' seconds')::interval * (172800.0 / $ROWS),
       now() - (k * 5 || ' seconds')::interval * (172800.0 / $ROWS) + interval '2 seconds', 2000
FROM generate_series(1, $ROWS / 5) k;
INSERT INTO ferry_load_errors (job, path, size, mtime, line_number, column_name, error_code, reason,
                               raw_line, raw_field_value, created_at)
SELECT 'vendor-events', '/in/2026/12/file-0000001.csv', 100001, 1800000001, n, 'occurred_at', 1206,
       'not a timestamp', 'e' || n || ',t,created,,,never', 'never', now()
FROM generate_series(1, 1000) n;
INSERT INTO ferry_schema_changes (job, path, size, mtime, change, field, action, recorded_at)
SELECT 'task-events', '/in/2026/12/file-' || lpad(i::text, 7, '0') || '.csv', 100000 + i, 1800000000 + i,
       'new_fields', 'extra', 'none', now()
FROM generate_series(3, $ROWS, 300) i;
VACUUM ANALYZE;
SQL

"$FERRY" --config "$work/ferry.toml" --log-level warn run >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done

time_page() {
  local path=$1
  local times=()
  for _ in $(seq 1 "$REPEAT"); do
    times+=("$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$port$path")")
  done
  printf '%s\n' "${times[@]}" | python3 -c "
import sys, statistics
rows = [l.split() for l in sys.stdin if l.strip()]
codes = {r[0] for r in rows}
ms = [float(r[1]) * 1000 for r in rows]
print(f'{sys.argv[1]:<60} {\",\".join(sorted(codes)):>5} {statistics.median(ms):8.1f} {max(ms):8.1f}')
" "$path"
}

printf '%-60s %5s %8s %8s\n' "page ($ROWS file versions)" code "median" "worst"
time_page "/"
time_page "/jobs/task-events"
time_page "/jobs/task-events?state=failed"
time_page "/jobs/vendor-events/file?path=%2Fin%2F2026%2F12%2Ffile-0000001.csv"
time_page "/loads"
time_page "/loads?job=audit-events"
