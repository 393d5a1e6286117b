# Sourced by the bench scripts: start_vsftpd PORT ROOT DIR starts vsftpd
# on 127.0.0.1:PORT serving ROOT to anonymous, read-only, with its config
# and start-up errors in DIR; sets VSFTPD_PID. ROOT must not be writable
# by the anonymous user (vsftpd refuses to serve it).
start_vsftpd() {
  local port=$1 root=$2 dir=$3
  mkdir -p "$dir/empty"
  cat > "$dir/vsftpd.conf" <<CONF
listen=YES
listen_ipv6=NO
background=NO
listen_address=127.0.0.1
listen_port=$port
anonymous_enable=YES
anon_root=$root
no_anon_password=YES
local_enable=NO
write_enable=NO
pasv_enable=YES
pasv_min_port=40000
pasv_max_port=49999
pasv_address=127.0.0.1
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
secure_chroot_dir=$dir/empty
xferlog_enable=NO
CONF
  # vsftpd reports start-up errors on fd 0.
  /usr/sbin/vsftpd "$dir/vsftpd.conf" 0>"$dir/vsftpd.err" >/dev/null 2>&1 &
  VSFTPD_PID=$!
}
