#!/usr/bin/env bash
# Normalize throughput and memory: generates a task-event file of SIZE_MB
# in each format (CSV, NDJSON, XML), runs `ferry normalize` on it (release
# build) and prints input MB/s, rows/s and peak RSS, next to `gzip -1` of
# the same bytes.
#
#   bench/normalize.sh [SIZE_MB]      (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-1000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ferry-target}"
cargo build --release --quiet --bin ferry
FERRY="$CARGO_TARGET_DIR/release/ferry"
work=$(mktemp -d /var/tmp/ferry-nbench.XXXXXX)
trap 'rm -rf "$work"' EXIT

cols='
  { name = "event_id",      type = "varchar(64)", required = true, SRC_ID },
  { name = "task_id",       type = "varchar(64)", required = true },
  { name = "event_type",    type = "varchar(32)", required = true },
  { name = "status",        type = "varchar(32)" },
  { name = "user_id",       type = "varchar(64)" },
  { name = "source_system", type = "varchar(64)" },
  { name = "occurred_at",   type = "timestamptz", required = true },
  { name = "duration_ms",   type = "bigint" },
  { name = "attempt",       type = "int" },
  { name = "payload",       type = "json" },'
{
  printf '[staging]\nbucket = "unused"\n[warehouse]\nkind = "postgres"\n[sources.s]\nkind = "local"\nroot = "/tmp"\n'
  for f in csv ndjson xml; do
    case $f in
      csv) format='{ kind = "csv" }'; id='source = "event_id"' ;;
      ndjson) format='{ kind = "ndjson" }'; id='source = "event_id"' ;;
      xml) format='{ kind = "xml", record_path = "/export/events/event" }'; id='source = "@id"' ;;
    esac
    printf '[[jobs]]\nname = "bench-%s"\nsource = "s"\npath = "/"\ntarget = "task_events"\nmode = "append"\nformat = %s\ncolumns = [%s\n]\n' \
      "$f" "$format" "${cols/SRC_ID/$id}"
  done
} > "$work/ferry.toml"

printf '%-8s %9s %10s %12s %12s %12s %14s\n' format "size MB" "ferry s" "ferry MB/s" "rows/s" "peak RSS MiB" "gzip -1 MB/s"
for f in csv ndjson xml; do
  python3 bench/gen_events.py "$f" "$SIZE_MB" "$work/events.$f"
  bytes=$(stat -c %s "$work/events.$f")
  sync
  /usr/bin/time -f '%M %e' -o "$work/time.$f" \
    "$FERRY" --config "$work/ferry.toml" --log-level warn normalize "$work/events.$f" --job "bench-$f" --out "$work/out.csv.gz" > "$work/out.$f"
  read -r rss_kb secs < "$work/time.$f"
  rows=$(sed -E 's/.*: ([0-9]+) rows written.*/\1/' "$work/out.$f")
  gz_start=$(date +%s.%N); gzip -1 -c "$work/events.$f" > /dev/null; gz_end=$(date +%s.%N)
  python3 - "$f" "$bytes" "$secs" "$rows" "$rss_kb" "$gz_start" "$gz_end" <<'PY'
import sys
f, b, s, rows, rss, g0, g1 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
print(f"{f:<8} {b/1e6:9.0f} {s:10.2f} {b/1e6/s:12.1f} {rows/s:12.0f} {rss/1024:12.1f} {b/1e6/(g1-g0):14.1f}")
PY
  rm -f "$work/events.$f" "$work/out.csv.gz"
done
