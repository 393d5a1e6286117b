#!/usr/bin/env bash
# Load throughput into PostgreSQL, ferry against the same rows by hand.
#
# Generates a task-event CSV of SIZE_MB (1000 MB is about 5.2 M rows), then
# for each mode (append, merge) times `ferry once` end to end (local folder
# -> normalize -> S3 stand-in -> COPY FROM STDIN -> merge -> ledger) and
# the hand-run path on the very same gzip CSV: `psql \copy` into the table
# (append), or `\copy` into a staging table plus the same delete+insert of
# the latest row per key (merge). Prints rows/s and the ratio. The S3
# stand-in is `ferry-dev-stack --serve` (release build); PostgreSQL is the
# local server.
#
#   bench/load.sh [SIZE_MB]      (default 1000; 700 MB is 5.1 M rows)
#
# FERRY_MODES="append" runs one mode only; FERRY_WRAP runs ferry under a
# command (e.g. "/usr/bin/time -v"); FERRY_LOG="warn,ferry=debug"
# makes ferry print each load's phase timings (prepare, copy, merge,
# ledger and commit).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-1000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ferry-target}"
cargo build --release --quiet --features testkit --bin ferry --bin ferry-dev-stack
BIN="$CARGO_TARGET_DIR/release"
PSQL=(env PGOPTIONS=-cclient_min_messages=warning psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -q -X)
work=$(mktemp -d /var/tmp/ferry-lbench.XXXXXX)
stack_pid=""
cleanup() {
  [ -n "$stack_pid" ] && kill "$stack_pid" 2>/dev/null || true
  "${PSQL[@]}" -c "DROP SCHEMA IF EXISTS ferry_bench_append CASCADE; DROP SCHEMA IF EXISTS ferry_bench_merge CASCADE" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$BIN/ferry-dev-stack" --serve > "$work/stack.log" 2>&1 &
stack_pid=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null && break
  sleep 0.2
done

mkdir -p "$work/in"
python3 bench/gen_events.py csv "$SIZE_MB" "$work/in/events.csv"
rows=$(( $(wc -l < "$work/in/events.csv") - 1 ))
cols="event_id, task_id, event_type, status, user_id, source_system, occurred_at, duration_ms, attempt, payload"
columns=$(sed 's/SRC_ID/source = "event_id"/' bench/columns.toml)

now() { date +%s.%N; }
printf '%-7s %10s %9s %13s %9s %13s %7s\n' mode rows "ferry s" "ferry rows/s" "psql s" "psql rows/s" ratio
for mode in ${FERRY_MODES:-append merge}; do
  schema="ferry_bench_$mode"
  "${PSQL[@]}" -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema"
  sed -e "s/^schema = \"ferry_local\"/schema = \"$schema\"/" -e '/^\[sources.demo-sftp\]/,$d' config/local.toml > "$work/ferry.toml"
  cat >> "$work/ferry.toml" <<TOML
[sources.bench]
kind = "local"
root = "$work/in"

[[jobs]]
name = "bench"
source = "bench"
path = "/"
pattern = "*.csv"
target = "task_events"
mode = "$mode"
key = ["event_id"]
order_by = "occurred_at"
settle = { min_age = "0s" }
columns = [
$columns
]
TOML
  "$BIN/ferry" --config "$work/ferry.toml" --log-level warn migrate > /dev/null
  t0=$(now)
  ${FERRY_WRAP:-} "$BIN/ferry" --config "$work/ferry.toml" --log-level "${FERRY_LOG:-warn}" once > "$work/once.$mode"
  t1=$(now)
  loaded=$("${PSQL[@]}" -At -c "SELECT count(*) FROM $schema.task_events")

  # By hand, on the same gzip CSV ferry stages (its last two columns are
  # ferry_file and ferry_line).
  "$BIN/ferry" --config "$work/ferry.toml" --log-level warn normalize "$work/in/events.csv" --job bench --out "$work/staged.csv.gz" > /dev/null
  "${PSQL[@]}" -c "CREATE TABLE $schema.hand (LIKE $schema.task_events INCLUDING ALL)"
  copy_opts="(FORMAT csv, NULL '\\N')"
  if [ "$mode" = append ]; then
    script="\\copy $schema.hand ($cols, ferry_file, ferry_line) FROM PROGRAM 'gunzip -c $work/staged.csv.gz' WITH $copy_opts"
  else
    script="BEGIN;
CREATE TEMP TABLE st (LIKE $schema.hand);
\\copy st ($cols, ferry_file, ferry_line) FROM PROGRAM 'gunzip -c $work/staged.csv.gz' WITH $copy_opts
DELETE FROM $schema.hand USING st WHERE $schema.hand.event_id = st.event_id;
INSERT INTO $schema.hand ($cols, ferry_file, ferry_line)
  SELECT $cols, ferry_file, ferry_line FROM (
    SELECT $cols, ferry_file, ferry_line, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY occurred_at DESC NULLS LAST, ferry_file DESC, ferry_line DESC) AS rn FROM st) latest
  WHERE rn = 1;
COMMIT;"
  fi
  t2=$(now)
  printf '%s\n' "$script" | "${PSQL[@]}" > /dev/null
  t3=$(now)
  by_hand=$("${PSQL[@]}" -At -c "SELECT count(*) FROM $schema.hand")
  if [ "$loaded" != "$by_hand" ]; then
    echo "mismatch in $mode: ferry loaded $loaded rows, by hand $by_hand" >&2
    exit 1
  fi
  python3 - "$mode" "$rows" "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
mode, rows = sys.argv[1], int(sys.argv[2])
t0, t1, t2, t3 = map(float, sys.argv[3:7])
f, h = t1 - t0, t3 - t2
print(f"{mode:<7} {rows:>10} {f:9.1f} {rows/f:13.0f} {h:9.1f} {rows/h:13.0f} {h/f:7.2f}")
PY
done
