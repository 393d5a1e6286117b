//! The test harness's own servers work with the clients ferry uses, and
//! ferry's SFTP source refuses what it must refuse.

use crate::harness::{BUCKET, Stack};
use ferry::config::{HostKeyPolicy, Secret, SftpAuth, SftpSettings};
use ferry::source::Source;
use ferry::source::sftp::SftpSource;
use ferry::testkit::ftp::FtpServer;
use ferry::testkit::testdata;
use std::time::Duration;
use tokio::io::AsyncReadExt;

fn sftp_settings(stack: &Stack, auth: SftpAuth, host_key: HostKeyPolicy) -> SftpSettings {
    SftpSettings {
        host: "127.0.0.1".into(),
        port: stack.sftp.addr.port(),
        user: "partner".into(),
        auth,
        host_key,
        connect_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(60),
        reads_in_flight: 16,
    }
}

fn client_key() -> SftpAuth {
    SftpAuth::Key {
        file: testdata().join("keys/client_ed25519").display().to_string(),
        passphrase: None,
    }
}

#[tokio::test]
async fn s3_server_serves_the_sdk() {
    let stack = Stack::start().await;
    let cfg = ferry::config::from_toml_str(&format!(
        "{}[warehouse]\nkind = \"postgres\"\n",
        stack.base_toml()
    ))
    .unwrap();
    let stager = ferry::stage::Stager::new(&cfg.staging).await;
    stager.check().await.expect("bucket reachable");
    let local = stack.dir.path().join("obj.bin");
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&local, &body).unwrap();
    stager.upload_file(&local, "x/obj.bin").await.unwrap();
    let got = stager
        .client()
        .get_object()
        .bucket(BUCKET)
        .key("x/obj.bin")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(got.as_ref(), body.as_slice());
}

#[tokio::test]
async fn sftp_source_lists_streams_and_finalizes_with_key_auth() {
    let stack = Stack::start().await;
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    let p = stack.sftp.root.join("in/sub");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(stack.sftp.root.join("in/big.bin"), &big).unwrap();
    std::fs::write(p.join("nested.csv"), "a\n").unwrap();
    let src = SftpSource::connect(
        "partner",
        &sftp_settings(
            &stack,
            client_key(),
            HostKeyPolicy::KnownHosts(stack.known_hosts.display().to_string()),
        ),
    )
    .await
    .expect("connects with the client key and a known host key");

    let flat = src.list("/in", false).await.unwrap();
    assert_eq!(
        flat.iter().map(|e| e.relative.as_str()).collect::<Vec<_>>(),
        vec!["big.bin"]
    );
    assert_eq!(flat[0].size, big.len() as u64);
    assert!(flat[0].mtime > 1_600_000_000);
    let deep = src.list("/in", true).await.unwrap();
    assert_eq!(
        deep.iter().map(|e| e.relative.as_str()).collect::<Vec<_>>(),
        vec!["big.bin", "sub/nested.csv"]
    );

    let mut stream = src.open("/in/big.bin", 0).await.unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert!(got == big, "downloaded bytes differ");

    let err = src.list("/missing", false).await.unwrap_err();
    assert!(err.chain().contains("/missing"), "{}", err.chain());

    let moved = src
        .finalize(
            "/in/big.bin",
            &ferry::config::Finalize::Move("/archive".into()),
        )
        .await
        .unwrap();
    assert_eq!(moved.as_deref(), Some("/archive/big.bin"));
    assert!(stack.sftp.root.join("archive/big.bin").exists());
    let deleted = src
        .finalize("/in/sub/nested.csv", &ferry::config::Finalize::Delete)
        .await
        .unwrap();
    assert_eq!(deleted, None);
    assert!(!p.join("nested.csv").exists());
}

#[tokio::test]
async fn sftp_accepts_password_and_pinned_fingerprint_and_passphrase_keys() {
    let stack = Stack::start().await;
    let fp = stack.sftp.fingerprint();
    assert!(fp.starts_with("SHA256:") && !fp.ends_with('='), "{fp}");
    SftpSource::connect(
        "partner",
        &sftp_settings(
            &stack,
            SftpAuth::Password(Secret::new("partner-pw")),
            HostKeyPolicy::Fingerprint(fp.clone()),
        ),
    )
    .await
    .expect("password auth with a pinned fingerprint");
    let wrong = SftpSource::connect(
        "partner",
        &sftp_settings(
            &stack,
            SftpAuth::Password(Secret::new("wrong")),
            HostKeyPolicy::Fingerprint(fp),
        ),
    )
    .await
    .err()
    .expect("a wrong password is refused");
    assert!(
        wrong.chain().contains("refused user \"partner\""),
        "{}",
        wrong.chain()
    );
    assert!(
        !wrong.chain().contains("wrong"),
        "the password never shows: {}",
        wrong.chain()
    );
    let bad_passphrase = SftpSource::connect(
        "partner",
        &sftp_settings(
            &stack,
            SftpAuth::Key {
                file: testdata()
                    .join("keys/client_ed25519_pass")
                    .display()
                    .to_string(),
                passphrase: Some(Secret::new("not-the-passphrase")),
            },
            HostKeyPolicy::AcceptAny,
        ),
    )
    .await
    .err()
    .expect("a wrong passphrase fails");
    assert!(
        bad_passphrase.chain().contains("cannot load private key"),
        "{}",
        bad_passphrase.chain()
    );
}

#[tokio::test]
async fn sftp_refuses_an_unknown_or_changed_host_key() {
    let stack = Stack::start().await;
    let empty = stack.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let err = SftpSource::connect(
        "partner",
        &sftp_settings(
            &stack,
            client_key(),
            HostKeyPolicy::KnownHosts(empty.display().to_string()),
        ),
    )
    .await
    .err()
    .expect("an unknown host key is refused");
    let msg = err.chain();
    assert!(
        msg.contains(&stack.sftp.fingerprint()),
        "names the fingerprint it saw: {msg}"
    );
    assert!(msg.contains("ssh-keyscan"), "says how to trust it: {msg}");
    assert!(!err.is_transient());

    let other = ferry::testkit::sftp::test_key("client_ed25519");
    let changed = stack.dir.path().join("changed_known_hosts");
    std::fs::write(
        &changed,
        format!(
            "[127.0.0.1]:{} {}\n",
            stack.sftp.addr.port(),
            other.public_key().to_openssh().unwrap()
        ),
    )
    .unwrap();
    let err = SftpSource::connect(
        "partner",
        &sftp_settings(
            &stack,
            client_key(),
            HostKeyPolicy::KnownHosts(changed.display().to_string()),
        ),
    )
    .await
    .err()
    .expect("a changed host key is refused");
    assert!(err.chain().contains("HOST KEY CHANGED"), "{}", err.chain());

    let err = SftpSource::connect(
        "partner",
        &sftp_settings(
            &stack,
            client_key(),
            HostKeyPolicy::Fingerprint("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        ),
    )
    .await
    .err()
    .expect("a fingerprint mismatch is refused");
    assert!(err.chain().contains("pins SHA256:AAAA"), "{}", err.chain());
}

#[tokio::test]
async fn ftp_server_serves_suppaftp_in_binary_mode() {
    let dir = tempfile::tempdir().unwrap();
    let body = "a,b\r\n1,2\n";
    std::fs::write(dir.path().join("data.csv"), body).unwrap();
    let server = FtpServer::start(dir.path(), 0).await.unwrap();
    let mut ftp = suppaftp::tokio::AsyncFtpStream::connect(server.addr)
        .await
        .unwrap();
    ftp.login("anonymous", "ferry@example.com").await.unwrap();
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .await
        .unwrap();
    let listing = ftp.nlst(None).await.unwrap();
    assert!(
        listing.iter().any(|l| l.ends_with("data.csv")),
        "{listing:?}"
    );
    let mut stream = ftp.retr_as_stream("data.csv").await.unwrap();
    let mut got = String::new();
    stream.read_to_string(&mut got).await.unwrap();
    stream.finish().await.unwrap();
    assert_eq!(got, body, "bytes come back unchanged");
    ftp.quit().await.unwrap();
}

#[tokio::test]
async fn an_sftp_download_cut_midway_resumes_and_the_bytes_match() {
    use sha2::{Digest, Sha256};
    let stack = Stack::start().await;
    let data: Vec<u8> = (0..6_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::create_dir_all(stack.sftp.root.join("in")).unwrap();
    std::fs::write(stack.sftp.root.join("in/big.bin"), &data).unwrap();
    // The first SSH connection dies after ~2 MB from the server.
    let proxy = ferry::testkit::proxy::CuttingProxy::start(stack.sftp.addr, 2_000_000, 1)
        .await
        .unwrap();
    let mut known = std::fs::read_to_string(&stack.known_hosts).unwrap();
    known.push_str(&format!(
        "[127.0.0.1]:{} {}\n",
        proxy.addr.port(),
        stack.sftp.host_key.to_openssh().unwrap()
    ));
    std::fs::write(&stack.known_hosts, known).unwrap();
    let mut settings = sftp_settings(
        &stack,
        client_key(),
        HostKeyPolicy::KnownHosts(stack.known_hosts.display().to_string()),
    );
    settings.port = proxy.addr.port();
    let src: std::sync::Arc<dyn Source> =
        std::sync::Arc::new(SftpSource::connect("partner", &settings).await.unwrap());

    let mut stream = ferry::source::resume::Resuming::open(src, "/in/big.bin")
        .await
        .unwrap();
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .await
        .expect("the download resumes after the cut");
    assert_eq!(
        proxy.cuts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the connection really was cut"
    );
    assert!(
        proxy.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "a new connection was made"
    );
    assert_eq!(got.len(), data.len());
    assert_eq!(
        hex::encode(Sha256::digest(&got)),
        hex::encode(Sha256::digest(&data))
    );
}
