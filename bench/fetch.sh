#!/usr/bin/env bash
# Download throughput over loopback: ferry's SFTP and FTP clients against
# OpenSSH's `sftp` and `curl`, on the same file from the same real servers
# (OpenSSH sshd, vsftpd). Prints MB/s for each and the ratios.
#
#   bench/fetch.sh [SIZE_MB] [RUNS]     (defaults: 500 MB, best of 3)
#
# Runs as root (it starts sshd and vsftpd on loopback high ports via the
# same set-up as the tests) and builds ferry in release mode first.
# Connection set-up is excluded for every client: ferry reports the
# transfer only, curl's pre-transfer time and sftp's time for a 1-byte
# file are subtracted. ferry is timed twice: `--no-hash` (the transfer
# alone, as sftp and curl do it; the ratios use this) and with its SHA-256
# on a second thread (what a load does).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-500}
RUNS=${2:-3}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ferry-target}"

bash .ci/setup >/dev/null
cargo build --release --quiet --bin ferry
FERRY="$CARGO_TARGET_DIR/release/ferry"

work=$(mktemp -d /var/tmp/ferry-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
chmod 755 "$work"
mkdir -p "$work/root" "$work/empty"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom > "$work/root/big.bin"
printf 'x' > "$work/root/tiny.bin"
chmod 644 "$work/root/"*.bin
SIZE=$(stat -c %s "$work/root/big.bin")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SSH_PORT=$(free_port)
FTP_PORT=$(free_port)

# sshd with the test host key and the test client key.
. bench/sshd.sh
start_sshd "$SSH_PORT" "$work"
pids+=("$SSHD_PID")

# vsftpd, anonymous, read-only.
. bench/vsftpd.sh
start_vsftpd "$FTP_PORT" "$work/root" "$work"
pids+=("$VSFTPD_PID")

cat > "$work/ferry.toml" <<CONF
[staging]
bucket = "unused"
[warehouse]
kind = "postgres"
[sources.bench-sftp]
kind = "sftp"
host = "127.0.0.1"
port = $SSH_PORT
user = "$(id -un)"
private_key_file = "$work/client_key"
known_hosts_file = "$work/known_hosts"
[sources.bench-ftp]
kind = "ftp"
host = "127.0.0.1"
port = $FTP_PORT
CONF
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/$SSH_PORT) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$FTP_PORT) 2>/dev/null && break
  sleep 0.1
done

mbps() { python3 -c "print(f'{$SIZE / 1e6 / max($1, 1e-9):.1f}')"; }
best() { sort -g | tail -1; }

ferry_run() { # source path [--no-hash] -> MB/s
  "$FERRY" --config "$work/ferry.toml" --log-level warn fetch "$@" | sed -E 's/.*\(([0-9.]+) MB\/s\).*/\1/'
}
sftp_secs() { # path -> seconds
  local t0 t1
  t0=$(date +%s.%N)
  sftp -q -o BatchMode=yes -o UserKnownHostsFile="$work/known_hosts" -i "$work/client_key" -P "$SSH_PORT" \
    "$(id -un)@127.0.0.1:$1" /dev/null >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print($t1 - $t0)"
}
curl_mbps() {
  curl -s -o /dev/null -w '%{time_pretransfer} %{time_total}\n' "ftp://127.0.0.1:$FTP_PORT/big.bin" |
    python3 -c "import sys; a,b=map(float,sys.stdin.read().split()); print(f'{$SIZE/1e6/max(b-a,1e-9):.1f}')"
}

declare -a F_SFTP F_SFTP_H O_SFTP F_FTP F_FTP_H CURL
for _ in $(seq "$RUNS"); do
  F_SFTP+=("$(ferry_run bench-sftp "$work/root/big.bin" --no-hash)")
  F_SFTP_H+=("$(ferry_run bench-sftp "$work/root/big.bin")")
  setup=$(sftp_secs "$work/root/tiny.bin")
  total=$(sftp_secs "$work/root/big.bin")
  O_SFTP+=("$(mbps "$(python3 -c "print($total - $setup)")")")
  F_FTP+=("$(ferry_run bench-ftp /big.bin --no-hash)")
  F_FTP_H+=("$(ferry_run bench-ftp /big.bin)")
  CURL+=("$(curl_mbps)")
done
b() { printf '%s\n' "$@" | best; }
fs=$(b "${F_SFTP[@]}"); fsh=$(b "${F_SFTP_H[@]}"); os=$(b "${O_SFTP[@]}")
ff=$(b "${F_FTP[@]}"); ffh=$(b "${F_FTP_H[@]}"); cu=$(b "${CURL[@]}")
echo "file: $SIZE bytes over loopback, best of $RUNS runs"
echo "all runs: ferry-sftp ${F_SFTP[*]} | hashed ${F_SFTP_H[*]} | sftp ${O_SFTP[*]} | ferry-ftp ${F_FTP[*]} | hashed ${F_FTP_H[*]} | curl ${CURL[*]}"
printf '%-30s %10s\n' client MB/s
printf '%-30s %10s\n' "ferry sftp" "$fs" "ferry sftp + sha256" "$fsh" "OpenSSH sftp" "$os" \
  "ferry ftp" "$ff" "ferry ftp + sha256" "$ffh" "curl ftp" "$cu"
python3 -c "print(f'ratio sftp ferry/OpenSSH = {$fs/$os:.2f} (hashed {$fsh/$os:.2f})   ratio ftp ferry/curl = {$ff/$cu:.2f} (hashed {$ffh/$cu:.2f})')"
