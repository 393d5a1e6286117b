# Sourced by the bench scripts: start_sshd PORT DIR starts OpenSSH's sshd
# on 127.0.0.1:PORT with the test host key, letting the test client key
# (testdata/keys/client_ed25519, copied to DIR/client_key) log in as the
# current user; writes DIR/known_hosts and sets SSHD_PID.
start_sshd() {
  local port=$1 dir=$2
  mkdir -p /run/sshd
  install -m 600 testdata/keys/host_ed25519 "$dir/host_key"
  install -m 600 testdata/keys/client_ed25519 "$dir/client_key"
  cp testdata/keys/client_ed25519.pub "$dir/authorized_keys"
  cat > "$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
CONF
  /usr/sbin/sshd -D -e -f "$dir/sshd_config" 2>"$dir/sshd.log" &
  SSHD_PID=$!
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 testdata/keys/host_ed25519.pub)" > "$dir/known_hosts"
}
