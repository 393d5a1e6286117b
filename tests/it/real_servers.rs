//! ferry's FTP, FTPS and SFTP clients against the real Debian servers that
//! `.ci/run` installs: vsftpd (plain, and explicit FTPS with its default
//! `require_ssl_reuse=YES`), pure-ftpd (MLSD, honours ASCII mode) and
//! OpenSSH's sshd with key auth. Each test starts its own server on loopback
//! high ports and stops it when done.

use crate::harness::{ftp_settings, read_all};
use ferry::config::{
    Finalize, FtpDataMode, FtpSettings, FtpTls, HostKeyPolicy, Secret, SftpAuth, SftpSettings,
};
use ferry::source::Source;
use ferry::source::ftp::FtpSource;
use ferry::source::sftp::SftpSource;
use ferry::testkit::{free_port, testdata};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PURE_FTPD: &str = "/opt/pureftpd/usr/sbin/pure-ftpd";
const PURE_PW: &str = "/opt/pureftpd/usr/bin/pure-pw";

fn need(bin: &str) {
    assert!(
        Path::new(bin).exists(),
        "{bin} is missing: run .ci/run once (it installs vsftpd, openssh-server and unpacks pure-ftpd into /opt/pureftpd)"
    );
}

/// A server process, killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    /// vsftpd's anonymous root (what [`vsftpd_with`] serves).
    pub(crate) fn root(&self) -> PathBuf {
        self._dir.path().join("root")
    }

    /// Starts a [`vsftpd_with`] server again on its port, after it was
    /// killed: what a restarted server looks like to a client.
    pub(crate) fn start_vsftpd_again(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_vsftpd(self._dir.path(), self.port);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what} did not listen on {port}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn passive_range() -> (u16, u16) {
    let base = 30000 + (free_port().unwrap() % 300) * 100;
    (base, base + 99)
}

fn open_for_all(p: &Path) {
    let mode = if p.is_dir() { 0o777 } else { 0o666 };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// How vsftpd speaks TLS.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Tls {
    Off,
    Explicit,
    Implicit,
}

/// vsftpd serving `root` read-only to anonymous.
fn vsftpd(files: &[(&str, &[u8])], tls: Tls) -> Server {
    vsftpd_with(files, tls, "")
}

/// [`vsftpd`] with more lines of configuration.
pub(crate) fn vsftpd_with(files: &[(&str, &[u8])], tls: Tls, extra: &str) -> Server {
    need("/usr/sbin/vsftpd");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("root");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for (name, body) in files {
        let p = root.join(name.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
    }
    let port = free_port().unwrap();
    let (lo, hi) = passive_range();
    let tls_cfg = testdata().join("tls");
    let mut conf = format!(
        "listen=YES\nlisten_ipv6=NO\nbackground=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
         anonymous_enable=YES\nanon_root={root}\nno_anon_password=YES\nlocal_enable=NO\nwrite_enable=NO\n\
         pasv_enable=YES\npasv_min_port={lo}\npasv_max_port={hi}\npasv_address=127.0.0.1\n\
         seccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\nsecure_chroot_dir={empty}\nxferlog_enable=NO\n",
        root = root.display(),
        empty = empty.display(),
    );
    if tls == Tls::Implicit {
        conf.push_str("implicit_ssl=YES\n");
    }
    if tls != Tls::Off {
        conf.push_str(&format!(
            "ssl_enable=YES\nallow_anon_ssl=YES\nforce_anon_data_ssl=YES\nforce_anon_logins_ssl=YES\nrsa_cert_file={}\nrsa_private_key_file={}\n",
            tls_cfg.join("server.pem").display(),
            tls_cfg.join("server.key").display()
        ));
    }
    conf.push_str(extra);
    let conf_path = dir.path().join("vsftpd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    Server {
        child: spawn_vsftpd(dir.path(), port),
        port,
        _dir: dir,
    }
}

/// Starts vsftpd on the `vsftpd.conf` in `dir`, listening on `port`.
fn spawn_vsftpd(dir: &Path, port: u16) -> Child {
    let log = dir.join("vsftpd.err");
    // vsftpd reports start-up errors on fd 0.
    let mut child = Command::new("/usr/sbin/vsftpd")
        .arg(dir.join("vsftpd.conf"))
        .stdin(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, "vsftpd", &log);
    child
}

/// pure-ftpd with one virtual user `ferry` (password `pw`) at `home`.
fn pure_ftpd(home: &Path) -> Server {
    need(PURE_FTPD);
    let dir = tempfile::tempdir().unwrap();
    let (passwd, pdb) = (
        dir.path().join("pureftpd.passwd"),
        dir.path().join("pureftpd.pdb"),
    );
    let mut pw = Command::new(PURE_PW)
        .args(["useradd", "ferry", "-u", "ftp", "-g", "ftp", "-d"])
        .arg(home)
        .arg("-f")
        .arg(&passwd)
        .arg("-F")
        .arg(&pdb)
        .arg("-m")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    pw.stdin.take().unwrap().write_all(b"pw\npw\n").unwrap();
    assert!(pw.wait().unwrap().success(), "pure-pw useradd failed");
    let port = free_port().unwrap();
    let (lo, hi) = passive_range();
    let log = dir.path().join("pure-ftpd.log");
    let mut child = Command::new(PURE_FTPD)
        .arg("-S")
        .arg(format!("127.0.0.1,{port}"))
        .arg("-l")
        .arg(format!("puredb:{}", pdb.display()))
        .args(["-E", "-A", "-H", "-p", &format!("{lo}:{hi}")])
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("pure-ftpd.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, "pure-ftpd", &log);
    Server {
        child,
        port,
        _dir: dir,
    }
}

/// OpenSSH sshd with the test host key, accepting the test client key for
/// the current user (root in CI).
fn sshd() -> Server {
    need("/usr/sbin/sshd");
    std::fs::create_dir_all("/run/sshd").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host_key = dir.path().join("host_ed25519");
    std::fs::copy(testdata().join("keys/host_ed25519"), &host_key).unwrap();
    std::fs::set_permissions(&host_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let auth = dir.path().join("authorized_keys");
    let keys: String = [
        "client_ed25519.pub",
        "client_rsa.pub",
        "client_ecdsa.pub",
        "client_ed25519_pass.pub",
    ]
    .iter()
    .map(|k| std::fs::read_to_string(testdata().join("keys").join(k)).unwrap())
    .collect();
    std::fs::write(&auth, keys).unwrap();
    let port = free_port().unwrap();
    let conf = dir.path().join("sshd_config");
    std::fs::write(
        &conf,
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n",
            host_key.display(),
            dir.path().join("sshd.pid").display(),
            auth.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("sshd.log");
    let mut child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, "sshd", &log);
    Server {
        child,
        port,
        _dir: dir,
    }
}

fn ftp(port: u16, user: &str, password: &str, tls: Option<FtpTls>) -> FtpSettings {
    let host = if tls.is_some() {
        "localhost"
    } else {
        "127.0.0.1"
    };
    ftp_settings(host, port, user, password, tls)
}

fn crlf_body(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| match i % 50 {
            48 => b'\r',
            49 => b'\n',
            k => b'a' + (k % 26) as u8,
        })
        .collect()
}

#[tokio::test]
async fn vsftpd_lists_with_list_and_mdtm_and_downloads_binary() {
    let body = crlf_body(2_000_000);
    let server = vsftpd(&[("in/a.csv", &body), ("in/sub/b.csv", b"x\n")], Tls::Off);
    let src = FtpSource::connect("vsftpd", &ftp(server.port, "anonymous", "ferry@", None), 4)
        .await
        .unwrap();
    let listed = src.list("/in", true).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|e| e.relative.as_str()).collect();
    assert_eq!(names, vec!["a.csv", "sub/b.csv"]);
    let on_disk = std::fs::metadata(server._dir.path().join("root/in/a.csv"))
        .unwrap()
        .modified()
        .unwrap();
    let on_disk = on_disk
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(
        listed[0].mtime, on_disk,
        "vsftpd has no MLSD: MDTM gives the exact second"
    );
    assert_eq!(listed[0].size, body.len() as u64);
    assert!(
        read_all(&src, "/in/a.csv", 0).await == body,
        "bytes unchanged"
    );
    // The MDTMs of a listing run side by side, one connection each.
    assert_eq!(src.open_connections(), 2, "two files, two MDTMs at once");
    assert!(
        read_all(&src, "/in/a.csv", 123_457).await == body[123_457..],
        "REST resumes"
    );
}

#[tokio::test]
async fn vsftpd_with_a_per_client_limit_shrinks_the_pool_and_loses_no_download() {
    let bodies: Vec<Vec<u8>> = (0..6).map(|i| crlf_body(1_500_000 + i * 1000)).collect();
    let names: Vec<String> = (0..6).map(|i| format!("f{i}.csv")).collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&bodies)
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let server = vsftpd_with(&files, Tls::Off, "max_per_ip=2\n");
    let src = std::sync::Arc::new(
        FtpSource::connect("vsftpd", &ftp(server.port, "anonymous", "ferry@", None), 6)
            .await
            .unwrap(),
    );
    let downloads: Vec<_> = names
        .iter()
        .map(|n| {
            let (src, path) = (src.clone(), format!("/{n}"));
            tokio::spawn(async move { read_all(&*src, &path, 0).await })
        })
        .collect();
    for (d, body) in downloads.into_iter().zip(&bodies) {
        assert!(d.await.unwrap() == *body, "every download whole");
    }
    // vsftpd's count of a client's connections can lag (the harness's
    // probe, or a refused connection still counted), so the pool may
    // shrink one further than the limit; never above it.
    let limit = src.connection_limit();
    assert!(
        (1..=2).contains(&limit),
        "the pool keeps what the server allows: {limit}"
    );
    assert!(src.open_connections() <= limit);
}

#[tokio::test]
async fn vsftpd_serves_active_mode_and_pasv_with_the_nat_workaround() {
    let body = crlf_body(300_000);
    let server = vsftpd(&[("a.csv", &body)], Tls::Off);
    for mode in [FtpDataMode::Active, FtpDataMode::Pasv] {
        let mut cfg = ftp(server.port, "anonymous", "ferry@", None);
        cfg.data_mode = mode;
        let src = FtpSource::connect("vsftpd", &cfg, 4).await.unwrap();
        assert_eq!(src.list("/", false).await.unwrap().len(), 1, "{mode:?}");
        assert!(read_all(&src, "/a.csv", 0).await == body, "{mode:?}");
    }
}

#[tokio::test]
async fn vsftpd_explicit_ftps_reuses_tls_sessions_on_data_connections() {
    let body = crlf_body(500_000);
    let server = vsftpd(&[("in/a.csv", &body)], Tls::Explicit);
    let tls = FtpTls {
        implicit: false,
        ca_file: Some(testdata().join("tls/ca.pem").display().to_string()),
    };
    let src = FtpSource::connect(
        "vsftpd-tls",
        &ftp(server.port, "anonymous", "ferry@", Some(tls)),
        4,
    )
    .await
    .expect("AUTH TLS with the test CA");
    // Every data connection must resume the control connection's TLS
    // session (require_ssl_reuse=YES), or vsftpd answers 522.
    assert_eq!(src.list("/in", false).await.unwrap().len(), 1);
    assert!(read_all(&src, "/in/a.csv", 0).await == body);
    assert!(
        read_all(&src, "/in/a.csv", 0).await == body,
        "a second data connection"
    );
}

#[tokio::test]
async fn vsftpd_implicit_ftps_works_from_the_first_byte() {
    let server = vsftpd(&[("in/a.csv", b"a,b\r\n1,2\r\n")], Tls::Implicit);
    let tls = FtpTls {
        implicit: true,
        ca_file: Some(testdata().join("tls/ca.pem").display().to_string()),
    };
    let src = FtpSource::connect(
        "vsftpd-implicit",
        &ftp(server.port, "anonymous", "ferry@", Some(tls)),
        4,
    )
    .await
    .expect("implicit FTPS with the test CA");
    assert_eq!(read_all(&src, "/in/a.csv", 0).await, b"a,b\r\n1,2\r\n");
}

#[tokio::test]
async fn pure_ftpd_serves_mlsd_binary_bytes_and_finalizes() {
    let home = tempfile::tempdir().unwrap();
    open_for_all(home.path());
    let body = crlf_body(1_000_000);
    std::fs::create_dir_all(home.path().join("in")).unwrap();
    open_for_all(&home.path().join("in"));
    for (name, data) in [("in/a.csv", &body[..]), ("in/b.csv", b"1\n".as_slice())] {
        std::fs::write(home.path().join(name), data).unwrap();
        open_for_all(&home.path().join(name));
    }
    let server = pure_ftpd(home.path());
    let src = FtpSource::connect("pure", &ftp(server.port, "ferry", "pw", None), 4)
        .await
        .unwrap();
    let listed = src.list("/in", false).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|e| e.relative.as_str())
            .collect::<Vec<_>>(),
        vec!["a.csv", "b.csv"],
        "no . or .."
    );
    assert!(
        read_all(&src, "/in/a.csv", 0).await == body,
        "binary mode: pure-ftpd would rewrite line ends in ASCII"
    );
    let moved = src
        .finalize("/in/a.csv", &Finalize::Move("/done".into()))
        .await
        .unwrap();
    assert_eq!(moved.as_deref(), Some("/done/a.csv"));
    assert_eq!(std::fs::read(home.path().join("done/a.csv")).unwrap(), body);
    assert_eq!(
        src.finalize("/in/b.csv", &Finalize::Delete).await.unwrap(),
        None
    );
    assert!(!home.path().join("in/b.csv").exists());
}

fn sftp_settings(port: u16, known_hosts: &Path) -> SftpSettings {
    SftpSettings {
        host: "127.0.0.1".into(),
        port,
        user: whoami(),
        auth: SftpAuth::Key {
            file: testdata().join("keys/client_ed25519").display().to_string(),
            passphrase: None,
        },
        host_key: HostKeyPolicy::KnownHosts(known_hosts.display().to_string()),
        connect_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(60),
        reads_in_flight: 64,
    }
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

fn known_hosts_for(port: u16, dir: &Path) -> PathBuf {
    let pubkey = std::fs::read_to_string(testdata().join("keys/host_ed25519.pub")).unwrap();
    let key: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    let path = dir.join("known_hosts");
    std::fs::write(&path, format!("[127.0.0.1]:{port} {}\n", key.join(" "))).unwrap();
    path
}

#[tokio::test]
async fn openssh_sftp_with_key_auth_streams_and_moves() {
    let server = sshd();
    let work = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let inbox = work.path().join("in");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("big.bin"), &data).unwrap();
    let known = known_hosts_for(server.port, work.path());
    let src = SftpSource::connect("sshd", &sftp_settings(server.port, &known))
        .await
        .expect("key auth against sshd");
    let dir = inbox.display().to_string();
    let listed = src.list(&dir, false).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, data.len() as u64);
    let got = read_all(&src, &format!("{dir}/big.bin"), 0).await;
    assert_eq!(
        hex::encode(Sha256::digest(&got)),
        hex::encode(Sha256::digest(&data))
    );
    let tail = read_all(&src, &format!("{dir}/big.bin"), 19_000_000).await;
    assert!(tail == data[19_000_000..], "offset reads resume");
    let done = work.path().join("done").display().to_string();
    std::fs::create_dir_all(&done).unwrap();
    std::fs::write(format!("{done}/big.bin"), "older").unwrap();
    let moved = src
        .finalize(&format!("{dir}/big.bin"), &Finalize::Move(done.clone()))
        .await
        .unwrap();
    assert_eq!(moved, Some(format!("{done}/big.1.bin")));
    assert_eq!(
        std::fs::read_to_string(format!("{done}/big.bin")).unwrap(),
        "older"
    );
}

#[tokio::test]
async fn openssh_sftp_refuses_an_unknown_host_key() {
    let server = sshd();
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let err = SftpSource::connect("sshd", &sftp_settings(server.port, &empty))
        .await
        .err()
        .expect("refused");
    let fp = ferry::source::sftp::fingerprint(
        &ferry::testkit::sftp::test_key("host_ed25519")
            .public_key()
            .clone(),
    );
    assert!(err.chain().contains(&fp), "{}", err.chain());
}

#[tokio::test]
async fn openssh_accepts_rsa_ecdsa_and_passphrase_protected_keys() {
    let server = sshd();
    let work = tempfile::tempdir().unwrap();
    let known = known_hosts_for(server.port, work.path());
    for (key, passphrase) in [
        ("client_rsa", None),
        ("client_ecdsa", None),
        ("client_ed25519_pass", Some("ferry-test-passphrase")),
    ] {
        let mut settings = sftp_settings(server.port, &known);
        settings.auth = SftpAuth::Key {
            file: testdata().join("keys").join(key).display().to_string(),
            passphrase: passphrase.map(Secret::new),
        };
        let src = SftpSource::connect("sshd", &settings)
            .await
            .unwrap_or_else(|e| panic!("{key}: {}", e.chain()));
        let dir = work.path().display().to_string();
        assert!(src.list(&dir, false).await.is_ok(), "{key} lists");
    }
}
