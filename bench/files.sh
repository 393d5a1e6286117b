#!/usr/bin/env bash
# Many small files into PostgreSQL: files/s with batching.
#
# Writes N task-event CSV files of 1-10 KB (10-100 rows each, every event
# id unique) onto the local stack's SFTP server (`ferry-dev-stack --serve
# --state DIR`, release build), a vsftpd on loopback (the real server, as
# in the tests: `.ci/setup` installs it) and into a local folder, then times `ferry
# once` (list -> settle -> ledger lookup -> fetch -> normalize -> stage to
# the S3 stand-in -> batched COPY + merge + ledger) for each source, and
# checks every row landed once. Prints files/s and rows/s.
#
#   bench/files.sh [N] [MAX_FILES] [CONCURRENCY]   (defaults 10000 500 8)
#
# CONCURRENCY is the job's `concurrency` and each source's `max_transfers`
# (for FTP: control connections). FERRY_SOURCES picks sources (default
# "sftp ftp local").
# FERRY_LOG="warn,ferry=info" shows each batch's load time; FERRY_WRAP
# runs ferry under a command (e.g. "strace -f -c -o /tmp/strace.txt").
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
BATCH=${2:-500}
CONC=${3:-8}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ferry-target}"
cargo build --release --quiet --features testkit --bin ferry --bin ferry-dev-stack
BIN="$CARGO_TARGET_DIR/release"
PSQL=(env PGOPTIONS=-cclient_min_messages=warning psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -q -X)
work=$(mktemp -d /var/tmp/ferry-fbench.XXXXXX)
stack_pid=""
ftp_pid=""
cleanup() {
  [ -n "$stack_pid" ] && kill "$stack_pid" 2>/dev/null || true
  [ -n "$ftp_pid" ] && kill "$ftp_pid" 2>/dev/null || true
  "${PSQL[@]}" -c "DROP SCHEMA IF EXISTS ferry_bench_files CASCADE" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$BIN/ferry-dev-stack" --serve --state "$work/stack" > "$work/stack.log" 2>&1 &
stack_pid=$!
for _ in $(seq 150); do
  grep -q "serving until" "$work/stack.log" 2>/dev/null && break
  sleep 0.2
done
grep -q "serving until" "$work/stack.log" || { cat "$work/stack.log"; exit 1; }

# vsftpd, anonymous and read-only, on a free port (its root must not be
# writable by the anonymous user).
bash .ci/setup > /dev/null
FTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/ftp/root/bench"
chmod 755 "$work" "$work/ftp" "$work/ftp/root" "$work/ftp/root/bench"
. bench/vsftpd.sh
start_vsftpd "$FTP_PORT" "$work/ftp/root" "$work/ftp"
ftp_pid=$VSFTPD_PID

python3 - "$N" "$work/stack/sftp/bench" "$work/local" "$work/ftp/root/bench" <<'PY'
import os, random, sys
n, sftp_dir, local_dir, ftp_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
for d in (sftp_dir, local_dir, ftp_dir):
    os.makedirs(d, exist_ok=True)
rnd = random.Random(7)
header = "event_id,task_id,event_type,status,user_id,source_system,occurred_at,duration_ms,attempt,payload\n"
total = 0
for f in range(n):
    rows = rnd.randint(10, 100)
    lines = [header]
    for r in range(rows):
        lines.append(
            f"ev-{f:06d}-{r:03d},task-{rnd.randrange(5000):05d},started,open,u{rnd.randrange(300)},"
            f"jira,2026-03-01T{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:00Z,{rnd.randrange(10**6)},1,\n"
        )
    body = "".join(lines)
    total += rows
    for d in (sftp_dir, local_dir, ftp_dir):
        with open(os.path.join(d, f"events_{f:06d}.csv"), "w") as out:
            out.write(body)
print(total, file=open(os.path.join(local_dir, "..", "rows"), "w"))
PY
rows=$(cat "$work/rows")
bytes=$(du -sb "$work/local" | cut -f1)
columns=$(sed 's/SRC_ID/source = "event_id"/' bench/columns.toml)
echo "$N files, $rows rows, $bytes bytes; batch.max_files = $BATCH, concurrency = $CONC"

now() { date +%s.%N; }
printf '%-6s %7s %9s %9s %11s %8s\n' source files seconds "files/s" "rows/s" batches
for source in ${FERRY_SOURCES:-sftp ftp local}; do
  "${PSQL[@]}" -c "DROP SCHEMA IF EXISTS ferry_bench_files CASCADE; CREATE SCHEMA ferry_bench_files"
  sed -e 's/^schema = "ferry_local"/schema = "ferry_bench_files"/' -e '/^\[\[jobs\]\]/,$d' config/local.toml > "$work/ferry.toml"
  if [ "$source" = sftp ]; then
    src=demo-sftp
    path=/bench
    sed -i "/^\[sources.demo-sftp\]/a max_transfers = $CONC" "$work/ferry.toml"
  elif [ "$source" = ftp ]; then
    src=bench-ftp
    path=/bench
    printf '[sources.bench-ftp]\nkind = "ftp"\nhost = "127.0.0.1"\nport = %s\nuser = "anonymous"\nmax_transfers = %s\n' "$FTP_PORT" "$CONC" >> "$work/ferry.toml"
  else
    src=bench-local
    path=/
    printf '[sources.bench-local]\nkind = "local"\nroot = "%s"\nmax_transfers = %s\n' "$work/local" "$CONC" >> "$work/ferry.toml"
  fi
  cat >> "$work/ferry.toml" <<TOML

[[jobs]]
name = "bench-files"
source = "$src"
path = "$path"
pattern = "*.csv"
target = "task_events"
mode = "merge"
key = ["event_id"]
order_by = "occurred_at"
settle = { min_age = "0s" }
concurrency = $CONC
batch = { max_files = $BATCH, max_bytes = "1GiB", max_wait = "0s" }
columns = [
$columns
]
TOML
  "$BIN/ferry" --config "$work/ferry.toml" --log-level warn migrate > /dev/null
  t0=$(now)
  ${FERRY_WRAP:-} "$BIN/ferry" --config "$work/ferry.toml" --log-level "${FERRY_LOG:-warn}" once > "$work/once.$source"
  t1=$(now)
  loaded=$("${PSQL[@]}" -At -c "SELECT count(*) FROM ferry_bench_files.task_events")
  files=$("${PSQL[@]}" -At -c "SELECT count(*) FROM ferry_bench_files.ferry_files WHERE state = 'loaded'")
  batches=$("${PSQL[@]}" -At -c "SELECT count(*) FROM ferry_bench_files.ferry_loads")
  if [ "$loaded" != "$rows" ] || [ "$files" != "$N" ]; then
    echo "mismatch ($source): $files of $N files and $loaded of $rows rows loaded" >&2
    tail -3 "$work/once.$source" >&2
    exit 1
  fi
  python3 - "$source" "$N" "$rows" "$t0" "$t1" "$batches" <<'PY'
import sys
source, n, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = float(sys.argv[5]) - float(sys.argv[4])
print(f"{source:<6} {n:>7} {t:9.1f} {n/t:9.0f} {rows/t:11.0f} {sys.argv[6]:>8}")
PY
done
