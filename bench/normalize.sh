#!/usr/bin/env bash
# Normalize throughput and memory: generates a task-event file of SIZE_MB
# in each format (CSV, NDJSON, XML, and Parquet made from the CSV), runs `ferry normalize` on it (release
# build) and prints input MB/s, rows/s and peak RSS, next to `gzip -1` of
# the same bytes; then the same with the five derived columns of
# bench/transforms.toml added to the mapping (format `csv+5t` …) and the
# ratio of the two throughputs; for CSV also the plain mapping staged as
# Parquet (format `csv>pq`, its ratio to gzip CSV staging). Each is run RUNS times and the best time is printed (this
# machine shares its cores; the best run is the least disturbed one); peak
# RSS is the largest of the runs.
#
# A second table holds ferry against the limit programs
# (examples/limits.rs, the same crates on the same files): parse alone
# (csv / serde_json / quick-xml), gzip of ferry's own staged CSV at the
# job's level (1) and SHA-256 of the input, each on its own. The limit is
# max(parse, gzip) — the two can run on two cores side by side — and
# "vs limit" is limit / ferry's wall time; the CPU columns compare ferry's
# CPU per row with parse + gzip per row.
#
#   bench/normalize.sh [SIZE_MB] [RUNS]      (defaults 1000, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-1000}
RUNS=${2:-3}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ferry-target}"
cargo build --release --quiet --bin ferry --example gen_parquet --example limits
LIMITS="$CARGO_TARGET_DIR/release/examples/limits"
FERRY="$CARGO_TARGET_DIR/release/ferry"
work=$(mktemp -d /var/tmp/ferry-nbench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The mapping both benches use (SRC_ID: how the event id is found).
cols=$(cat bench/columns.toml)
{
  printf '[staging]\nbucket = "unused"\n[warehouse]\nkind = "postgres"\n[sources.s]\nkind = "local"\nroot = "/tmp"\n'
  for f in csv ndjson xml parquet; do
    case $f in
      parquet) format='{ kind = "parquet" }'; id='source = "event_id"' ;;
      csv) format='{ kind = "csv" }'; id='source = "event_id"' ;;
      ndjson) format='{ kind = "ndjson" }'; id='source = "event_id"' ;;
      xml) format='{ kind = "xml", record_path = "/export/events/event" }'; id='source = "@id"' ;;
    esac
    printf '[[jobs]]\nname = "bench-%s"\nsource = "s"\npath = "/"\ntarget = "task_events"\nmode = "append"\nformat = %s\ncolumns = [%s\n]\n' \
      "$f" "$format" "${cols/SRC_ID/$id}"
    printf '[[jobs]]\nname = "bench-%s-t"\nsource = "s"\npath = "/"\ntarget = "task_events"\nmode = "append"\nformat = %s\ncolumns = [%s\n%s\n]\n' \
      "$f" "$format" "${cols/SRC_ID/$id}" "$(cat bench/transforms.toml)"
  done
} > "$work/ferry.toml"

printf '%-8s %9s %10s %12s %12s %12s %14s %8s\n' format "size MB" "ferry s" "ferry MB/s" "rows/s" "peak RSS MiB" "gzip -1 MB/s" "vs plain"
# best_of JOB FILE [OUT]: the best wall time of RUNS runs (into $best_secs),
# the largest peak RSS (into $max_rss), rows written (into $rows); OUT
# (default out.csv.gz) ending in .parquet stages Parquet instead.
best_of() {
  best_secs=""; max_rss=0
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f '%M %e %U %S' -o "$work/time" \
      "$FERRY" --config "$work/ferry.toml" --log-level warn normalize "$2" --job "$1" --out "$work/${3:-out.csv.gz}" > "$work/out"
    read -r rss_kb secs user sys < "$work/time"
    if [ -z "$best_secs" ] || python3 -c "import sys; sys.exit(0 if $secs < $best_secs else 1)"; then
      best_secs=$secs; best_cpu=$(python3 -c "print($user + $sys)")
    fi
    if [ "$rss_kb" -gt "$max_rss" ]; then max_rss=$rss_kb; fi
  done
  rows=$(sed -E 's/.*: ([0-9]+) rows written.*/\1/' "$work/out")
}
# timed CMD…: the best wall time of RUNS runs of CMD (into $t_wall) and
# that run's CPU time (into $t_cpu).
timed() {
  t_wall=""
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" > /dev/null
    read -r secs user sys < "$work/time"
    if [ -z "$t_wall" ] || python3 -c "import sys; sys.exit(0 if $secs < $t_wall else 1)"; then
      t_wall=$secs; t_cpu=$(python3 -c "print($user + $sys)")
    fi
  done
}
: > "$work/limits"
for f in csv ndjson xml parquet; do
  if [ "$f" = parquet ]; then
    # The CSV of SIZE_MB as Parquet (snappy, typed columns; smaller).
    python3 bench/gen_events.py csv "$SIZE_MB" "$work/events.tmp.csv"
    "$CARGO_TARGET_DIR/release/examples/gen_parquet" "$work/events.tmp.csv" "$work/events.parquet"
    rm -f "$work/events.tmp.csv"
  else
    python3 bench/gen_events.py "$f" "$SIZE_MB" "$work/events.$f"
  fi
  bytes=$(stat -c %s "$work/events.$f")
  sync
  best_gz=""
  for _ in $(seq "$RUNS"); do
    gz_start=$(date +%s.%N); gzip -1 -c "$work/events.$f" > /dev/null; gz_end=$(date +%s.%N)
    gz=$(python3 -c "print($gz_end - $gz_start)")
    if [ -z "$best_gz" ] || python3 -c "import sys; sys.exit(0 if $gz < $best_gz else 1)"; then best_gz=$gz; fi
  done
  best_of "bench-$f" "$work/events.$f"
  plain=$best_secs
  # The limit programs on the same input and on ferry's own staged CSV.
  ferry_cpu=$best_cpu; ferry_rows=$rows
  gzip -dc "$work/out.csv.gz" > "$work/staged.csv"
  case $f in
    csv|ndjson) timed "$LIMITS" parse "$f" "$work/events.$f"; parse_wall=$t_wall; parse_cpu=$t_cpu ;;
    xml) timed "$LIMITS" parse xml "$work/events.$f" event; parse_wall=$t_wall; parse_cpu=$t_cpu ;;
    *) parse_wall=0; parse_cpu=0 ;;
  esac
  timed "$LIMITS" gzip "$work/staged.csv" 1; gz_wall=$t_wall; gz_cpu=$t_cpu
  timed "$LIMITS" sha256 "$work/events.$f"; sha_wall=$t_wall
  echo "$f $plain $ferry_cpu $ferry_rows $parse_wall $parse_cpu $gz_wall $gz_cpu $sha_wall" >> "$work/limits"
  rm -f "$work/staged.csv"
  python3 - "$f" "$bytes" "$best_secs" "$rows" "$max_rss" "$best_gz" <<'PY'
import sys
f, b, s, rows, rss, gz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
print(f"{f:<8} {b/1e6:9.0f} {s:10.2f} {b/1e6/s:12.1f} {rows/s:12.0f} {rss/1024:12.1f} {b/1e6/gz:14.1f} {1:8.2f}")
PY
  best_of "bench-$f-t" "$work/events.$f"
  python3 - "$f+5t" "$bytes" "$best_secs" "$rows" "$max_rss" "$best_gz" "$plain" <<'PY'
import sys
f, b, s, rows, rss, gz, plain = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
print(f"{f:<8} {b/1e6:9.0f} {s:10.2f} {b/1e6/s:12.1f} {rows/s:12.0f} {rss/1024:12.1f} {b/1e6/gz:14.1f} {plain/s:8.2f}")
PY
  if [ "$f" = csv ]; then
    # The same rows staged as Parquet (stage_format = "parquet"); the last
    # column is gzip CSV staging's time over Parquet staging's.
    best_of "bench-$f" "$work/events.$f" out.parquet
    python3 - "csv>pq" "$bytes" "$best_secs" "$rows" "$max_rss" "$best_gz" "$plain" <<'PY'
import sys
f, b, s, rows, rss, gz, plain = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
print(f"{f:<8} {b/1e6:9.0f} {s:10.2f} {b/1e6/s:12.1f} {rows/s:12.0f} {rss/1024:12.1f} {b/1e6/gz:14.1f} {plain/s:8.2f}")
PY
  fi
  rm -f "$work/events.$f" "$work/out.csv.gz" "$work/out.parquet"
done

echo
python3 - "$work/limits" <<'PY'
import sys
print(f"{'format':<8} {'ferry s':>8} {'CPU s':>7} {'parse s':>8} {'gzip s':>7} {'sha256 s':>9} {'limit s':>8} {'vs limit':>9} {'CPU us/row':>11} {'parse+gzip':>11} {'CPU ratio':>10}")
for line in open(sys.argv[1]):
    f, wall, cpu, rows, pw, pc, gw, gc, sw = line.split()
    wall, cpu, rows, pw, pc, gw, gc, sw = float(wall), float(cpu), int(rows), float(pw), float(pc), float(gw), float(gc), float(sw)
    limit = max(pw, gw)
    per = lambda c: c / max(rows, 1) * 1e6
    parse = f"{pw:8.2f}" if pw else f"{'-':>8}"
    print(f"{f:<8} {wall:8.2f} {cpu:7.2f} {parse} {gw:7.2f} {sw:9.2f} {limit:8.2f} {limit / wall:9.2f} {per(cpu):11.2f} {per(pc + gc):11.2f} {cpu / max(pc + gc, 1e-9):10.2f}")
PY
