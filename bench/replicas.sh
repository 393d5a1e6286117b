#!/usr/bin/env bash
# Work sharing: one ferry replica (no queue, as without [queue]) against
# three replicas sharing one SQS queue, on the same files from a real
# OpenSSH sshd. For each replica it prints the bytes it fetched from the
# source (ferry_bytes_fetched_total, read from its /metrics) and the CPU
# seconds it used (utime + stime from /proc), then the totals and the ratios
# 3 : 1. On a 2-core machine wall time cannot show scaling; bytes and CPU
# can: three replicas must fetch no more than about the bytes of one and
# use about its CPU, since each file is fetched and normalized once.
#
#   bench/replicas.sh [FILES] [SIZE_MB]      (defaults: 80 files of 8 MB)
#
# SQS is moto (pip moto[server], as .ci/setup installs it); S3 is
# `ferry-dev-stack --serve` (release build); PostgreSQL is the local server.
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:-80}
SIZE_MB=${2:-8}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ferry-target}"
bash .ci/setup > /dev/null
cargo build --release --quiet --features testkit --bin ferry --bin ferry-dev-stack
BIN="$CARGO_TARGET_DIR/release"
PSQL=(env PGOPTIONS=-cclient_min_messages=warning psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -q -X -At)
SCHEMA=ferry_bench_replicas
work=$(mktemp -d /var/tmp/ferry-rbench.XXXXXX)
pids=()
replicas=()
cleanup() {
  for p in "${replicas[@]}" "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "${PSQL[@]}" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; echo "nothing on port $1" >&2; exit 1; }

# The source: FILES copies of one generated task-event file.
chmod 755 "$work"
mkdir -p "$work/root/outbox"
python3 bench/gen_events.py csv "$SIZE_MB" "$work/root/outbox/tasks_0000.csv"
for i in $(seq 1 $((FILES - 1))); do cp "$work/root/outbox/tasks_0000.csv" "$work/root/outbox/$(printf 'tasks_%04d.csv' "$i")"; done
chmod -R a+rX "$work/root"
total_bytes=$(( $(stat -c %s "$work/root/outbox/tasks_0000.csv") * FILES ))

. bench/sshd.sh
SSH_PORT=$(free_port)
start_sshd "$SSH_PORT" "$work"
pids+=("$SSHD_PID")
"$BIN/ferry-dev-stack" --serve > "$work/stack.log" 2>&1 &
pids+=($!)
MOTO_PORT=$(free_port)
# moto with an atomic ReceiveMessage (see the script): plain moto can hand
# one message to two receivers at once, which real SQS does not.
python3 src/testkit/moto_server.py -H 127.0.0.1 -p "$MOTO_PORT" > "$work/moto.log" 2>&1 &
pids+=($!)
wait_port "$SSH_PORT"; wait_port 9000; wait_port "$MOTO_PORT"

QUEUE_URL=$(python3 - "$MOTO_PORT" <<'PY'
import sys, boto3
sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
print(sqs.create_queue(QueueName="ferry-bench.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"])
PY
)
printf 'testing' > "$work/sqs-secret"
columns=$(sed 's/SRC_ID/source = "event_id"/' bench/columns.toml)

# config QUEUE: the bench job, with a [queue] section when QUEUE is "yes".
config() {
  sed -e "s/^schema = \"ferry_local\"/schema = \"$SCHEMA\"/" -e '/^\[sources.demo-sftp\]/,$d' \
      -e '/^http_listen/d' config/local.toml
  cat <<TOML
[sources.bench]
kind = "sftp"
host = "127.0.0.1"
port = $SSH_PORT
user = "$(id -un)"
private_key_file = "$work/client_key"
known_hosts_file = "$work/known_hosts"
TOML
  if [ "$1" = yes ]; then
    cat <<TOML

[queue]
kind = "sqs"
url = "$QUEUE_URL"
region = "us-east-1"
endpoint = "http://127.0.0.1:$MOTO_PORT"
access_key_id = "testing"
secret_access_key_file = "$work/sqs-secret"
wait_time = "1s"
lease_period = "15s"
TOML
  fi
  cat <<TOML

[[jobs]]
name = "bench"
source = "bench"
path = "$work/root/outbox"
pattern = "*.csv"
target = "task_events"
mode = "merge"
key = ["event_id"]
order_by = "occurred_at"
poll_interval = "2s"
settle = { min_age = "0s" }
batch = { max_files = 8, max_wait = "1s" }
columns = [
$columns
]
TOML
}

# run N QUEUE: N replicas until every file is loaded; one line per replica
# (bytes fetched, CPU seconds) into $work/run.N.
run() {
  local n=$1 queue=$2 ports=() t0 t1
  "${PSQL[@]}" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" > /dev/null
  config "$queue" > "$work/ferry.toml"
  "$BIN/ferry" --config "$work/ferry.toml" --log-level warn migrate > /dev/null
  replicas=()
  t0=$(date +%s.%N)
  for r in $(seq 1 "$n"); do
    local port; port=$(free_port)
    ports+=("$port")
    # (A replica id only with a [queue]: alone it would be half a section.)
    if [ "$queue" = yes ]; then export FERRY__QUEUE__REPLICA_ID="replica-$r"; fi
    FERRY__DAEMON__HTTP_LISTEN="127.0.0.1:$port" \
      "$BIN/ferry" --config "$work/ferry.toml" --log-level warn run > "$work/replica-$r.log" 2>&1 &
    unset FERRY__QUEUE__REPLICA_ID
    replicas+=($!)
  done
  for _ in $(seq 1200); do
    loaded=$("${PSQL[@]}" -c "SELECT count(*) FROM $SCHEMA.ferry_files WHERE state = 'loaded'" 2>/dev/null || echo 0)
    [ "$loaded" -ge "$FILES" ] && break
    sleep 0.25
  done
  t1=$(date +%s.%N)
  [ "$loaded" -ge "$FILES" ] || { echo "only $loaded of $FILES files loaded with $n replicas" >&2; exit 1; }
  : > "$work/run.$n"
  local tick; tick=$(getconf CLK_TCK)
  for i in "${!replicas[@]}"; do
    local pid=${replicas[$i]} bytes cpu
    bytes=$(curl -s "http://127.0.0.1:${ports[$i]}/metrics" | awk '/^ferry_bytes_fetched_total/ {s += $2} END {printf "%.0f", s}')
    cpu=$(awk -v t="$tick" '{printf "%.2f", ($14 + $15) / t}' "/proc/$pid/stat")
    echo "$bytes $cpu" >> "$work/run.$n"
  done
  kill -TERM "${replicas[@]}" 2>/dev/null || true
  wait "${replicas[@]}" 2>/dev/null || true
  replicas=()
  echo "$t0 $t1" > "$work/wall.$n"
}

run 1 no
run 3 yes
python3 - "$work" "$FILES" "$total_bytes" <<'PY'
import sys
work, files, source = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def read(n):
    rows = [tuple(map(float, l.split())) for l in open(f"{work}/run.{n}") if l.strip()]
    t0, t1 = map(float, open(f"{work}/wall.{n}").read().split())
    return rows, t1 - t0
print(f"{files} files, {source / 1e6:.1f} MB at the source")
print(f"{'run':<16} {'replica':>7} {'MB fetched':>11} {'CPU s':>7}")
totals = {}
for n, name in [(1, "1, no queue"), (3, "3, SQS queue")]:
    rows, wall = read(n)
    for i, (b, c) in enumerate(rows, 1):
        print(f"{name:<16} {i:>7} {b / 1e6:>11.1f} {c:>7.2f}")
    tb, tc = sum(b for b, _ in rows), sum(c for _, c in rows)
    totals[n] = (tb, tc)
    print(f"{name:<16} {'total':>7} {tb / 1e6:>11.1f} {tc:>7.2f}   wall {wall:.1f} s")
(b1, c1), (b3, c3) = totals[1], totals[3]
print(f"3 : 1   bytes {b3 / b1:.3f}x (at most 1.05x)   CPU {c3 / c1:.3f}x (at most 1.2x)")
PY
