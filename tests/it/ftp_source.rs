//! ferry's FTP and FTPS source against the in-process libunftp server.

use crate::harness::{ftp_settings, read_all};
use ferry::config::{Finalize, FtpDataMode, FtpSettings, FtpTls};
use ferry::source::Source;
use ferry::source::ftp::FtpSource;
use ferry::testkit::ftp::FtpServer;
use ferry::testkit::testdata;
use std::time::Duration;
use tokio::io::AsyncReadExt;

fn settings(port: u16, tls: Option<FtpTls>, host: &str) -> FtpSettings {
    ftp_settings(host, port, "anonymous", "ferry@example.com", tls)
}

fn body(n: u32) -> Vec<u8> {
    // CRLF and LF mixed, so that an ASCII-mode transfer would show.
    (0..n)
        .flat_map(|i| {
            if i % 97 == 0 {
                vec![b'\r', b'\n']
            } else {
                vec![(i % 251) as u8]
            }
        })
        .collect()
}

#[tokio::test]
async fn lists_downloads_resumes_and_moves_over_plain_ftp() {
    let dir = tempfile::tempdir().unwrap();
    let data = body(3_000_000);
    std::fs::create_dir_all(dir.path().join("in/sub")).unwrap();
    std::fs::write(dir.path().join("in/big.bin"), &data).unwrap();
    std::fs::write(dir.path().join("in/sub/a.csv"), "x\n").unwrap();
    std::fs::write(dir.path().join("in/.hidden"), "x\n").unwrap();
    let server = FtpServer::start(dir.path(), 0).await.unwrap();
    let src = FtpSource::connect(
        "vendor",
        &settings(server.addr.port(), None, "127.0.0.1"),
        4,
    )
    .await
    .unwrap();

    let flat = src.list("/in", false).await.unwrap();
    let names: Vec<&str> = flat.iter().map(|e| e.relative.as_str()).collect();
    assert_eq!(names, vec![".hidden", "big.bin"]);
    let big = &flat[1];
    assert_eq!(big.size, data.len() as u64);
    let on_disk = std::fs::metadata(dir.path().join("in/big.bin"))
        .unwrap()
        .modified()
        .unwrap();
    let on_disk = on_disk
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(big.mtime, on_disk, "MLSD modify gives the exact second");
    let deep = src.list("/in", true).await.unwrap();
    assert!(deep.iter().any(|e| e.relative == "sub/a.csv"), "{deep:?}");

    assert!(
        read_all(&src, "/in/big.bin", 0).await == data,
        "bytes are unchanged (binary mode)"
    );
    assert!(
        read_all(&src, "/in/big.bin", 1_000_001).await == data[1_000_001..],
        "REST resumes at the offset"
    );
    // The control connection is still usable after each download.
    assert_eq!(src.list("/in", false).await.unwrap().len(), 2);

    // Some servers refuse RETR at once, others (libunftp) after opening the
    // data connection: either way the download fails, never reads as empty.
    match src.open("/in/missing.csv", 0).await {
        Err(err) => assert!(err.chain().contains("550"), "{}", err.chain()),
        Ok(mut s) => {
            let mut out = Vec::new();
            let err = s
                .read_to_end(&mut out)
                .await
                .expect_err("a missing file is not an empty file");
            assert!(err.to_string().contains("/in/missing.csv"), "{err}");
        }
    }
    let err = src
        .list("/nope", false)
        .await
        .expect_err("listing a missing folder fails");
    assert!(err.chain().contains("/nope"), "{}", err.chain());

    std::fs::create_dir_all(dir.path().join("done")).unwrap();
    std::fs::write(dir.path().join("done/big.bin"), "older").unwrap();
    let moved = src
        .finalize("/in/big.bin", &Finalize::Move("/done".into()))
        .await
        .unwrap();
    assert_eq!(moved.as_deref(), Some("/done/big.1.bin"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("done/big.bin")).unwrap(),
        "older"
    );
    assert_eq!(
        std::fs::read(dir.path().join("done/big.1.bin")).unwrap(),
        data
    );
    assert_eq!(
        src.finalize("/in/sub/a.csv", &Finalize::Delete)
            .await
            .unwrap(),
        None
    );
    assert!(!dir.path().join("in/sub/a.csv").exists());
}

#[tokio::test]
async fn pasv_with_the_nat_workaround_downloads_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "a\r\n1\n").unwrap();
    let server = FtpServer::start(dir.path(), 0).await.unwrap();
    let mut cfg = settings(server.addr.port(), None, "127.0.0.1");
    cfg.data_mode = FtpDataMode::Pasv;
    let src = FtpSource::connect("vendor", &cfg, 4).await.unwrap();
    assert_eq!(src.list("/", false).await.unwrap().len(), 1);
    assert_eq!(read_all(&src, "/a.csv", 0).await, b"a\r\n1\n");
}

#[tokio::test]
async fn ftps_verifies_the_certificate_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a.csv"), "a,b\r\n1,2\r\n").unwrap();
    let server = FtpServer::start_tls(dir.path(), 0).await.unwrap();
    let ca = testdata().join("tls/ca.pem").display().to_string();

    let trusted = FtpTls {
        implicit: false,
        ca_file: Some(ca),
    };
    let src = FtpSource::connect(
        "vendor",
        &settings(server.addr.port(), Some(trusted), "localhost"),
        4,
    )
    .await
    .expect("explicit FTPS with the test CA");
    let listed = src.list("/in", false).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(read_all(&src, "/in/a.csv", 0).await, b"a,b\r\n1,2\r\n");
    assert_eq!(
        read_all(&src, "/in/a.csv", 0).await,
        b"a,b\r\n1,2\r\n",
        "a second TLS data connection"
    );

    let untrusted = FtpTls {
        implicit: false,
        ca_file: None,
    };
    let err = FtpSource::connect(
        "vendor",
        &settings(server.addr.port(), Some(untrusted), "localhost"),
        4,
    )
    .await
    .err()
    .expect("an unknown CA is refused");
    assert!(
        err.chain().contains("ca_file"),
        "says how to trust it: {}",
        err.chain()
    );
}

#[tokio::test]
async fn a_refused_login_is_permanent_and_names_the_user() {
    // libunftp's anonymous authenticator accepts everyone, so point the
    // client at a port where nothing listens to check the connect error,
    // and at the server with a bad TLS expectation for a permanent one.
    let port = ferry::testkit::free_port().unwrap();
    let err = FtpSource::connect("vendor", &settings(port, None, "127.0.0.1"), 4)
        .await
        .err()
        .expect("nothing listens");
    assert!(err.is_transient());
    assert!(
        err.chain()
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        err.chain()
    );
}

#[tokio::test]
async fn a_control_connection_the_server_closed_while_idle_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "a\n").unwrap();
    let server = FtpServer::start_with_idle_timeout(dir.path(), 1)
        .await
        .unwrap();
    let src = FtpSource::connect(
        "vendor",
        &settings(server.addr.port(), None, "127.0.0.1"),
        4,
    )
    .await
    .unwrap();
    assert_eq!(src.list("/", false).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        src.list("/", false)
            .await
            .expect("reconnects after the idle timeout")
            .len(),
        1
    );
    assert_eq!(read_all(&src, "/a.csv", 0).await, b"a\n");
}

/// Reads up to 64 KiB from `s` into `out`; false at the end.
async fn read_some(s: &mut ferry::source::ByteStream, out: &mut Vec<u8>) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).await.unwrap();
    out.extend_from_slice(&buf[..n]);
    n > 0
}

#[tokio::test]
async fn downloads_run_side_by_side_each_on_its_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (body(2_000_000), body(1_500_000));
    std::fs::write(dir.path().join("a.bin"), &a).unwrap();
    std::fs::write(dir.path().join("b.bin"), &b).unwrap();
    std::fs::write(dir.path().join("c.csv"), "c\n").unwrap();
    let server = FtpServer::start(dir.path(), 0).await.unwrap();
    let src = std::sync::Arc::new(
        FtpSource::connect(
            "vendor",
            &settings(server.addr.port(), None, "127.0.0.1"),
            3,
        )
        .await
        .unwrap(),
    );

    // Two downloads open at once, read in turns: one control connection
    // could run only one of them.
    let mut sa = src.open("/a.bin", 0).await.unwrap();
    let mut sb = src.open("/b.bin", 0).await.unwrap();
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        assert!(read_some(&mut sa, &mut got_a).await);
        assert!(read_some(&mut sb, &mut got_b).await);
    }
    // Commands do not wait behind the transfers: they take a third
    // connection.
    assert_eq!(src.list("/", false).await.unwrap().len(), 3);
    assert_eq!(src.open_connections(), 3);
    // With all three connections busy, the next command waits for one.
    let mut sc = src.open("/c.csv", 0).await.unwrap();
    let waiting = tokio::spawn({
        let src = src.clone();
        async move { src.list("/", false).await.map(|l| l.len()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a fourth connection is never opened while three are busy"
    );
    let mut got_c = Vec::new();
    while read_some(&mut sc, &mut got_c).await {}
    assert_eq!(got_c, b"c\n");
    assert_eq!(
        waiting.await.unwrap().unwrap(),
        3,
        "the freed connection serves it"
    );
    while read_some(&mut sa, &mut got_a).await {}
    while read_some(&mut sb, &mut got_b).await {}
    assert!(
        got_a == a && got_b == b,
        "both downloads whole and unchanged"
    );
    assert_eq!(
        src.open_connections(),
        3,
        "finished downloads give back their connections"
    );

    // A download dropped halfway closes its connection (its transfer
    // reply was never read); the pool opens a fresh one when needed.
    let mut half = src.open("/a.bin", 0).await.unwrap();
    assert!(read_some(&mut half, &mut Vec::new()).await);
    drop(half);
    assert_eq!(src.open_connections(), 2);
    assert!(read_all(&*src, "/b.bin", 0).await == b);
    assert!(read_all(&*src, "/a.bin", 1_000_000).await == a[1_000_000..]);
}

/// A scripted FTP peer, below the vsftpd test that covers the same MDTM
/// path: LIST shows `kept.csv` and `gone.csv`, and MDTM says 550 for
/// `gone.csv`, as a server does when the file was moved away between the
/// two commands.
async fn list_then_gone_server() -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let control = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = control.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = control.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 scripted\r\n").await.unwrap();
                let mut data: Option<tokio::net::TcpListener> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    let (cmd, arg) = line.split_once(' ').unwrap_or((&line, ""));
                    let reply = match cmd.to_ascii_uppercase().as_str() {
                        "USER" => "331 password\r\n".to_string(),
                        "PASS" => "230 in\r\n".to_string(),
                        "TYPE" => "200 binary\r\n".to_string(),
                        "FEAT" => "211-Features:\r\n SIZE\r\n211 End\r\n".to_string(),
                        "EPSV" => {
                            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                            let p = l.local_addr().unwrap().port();
                            data = Some(l);
                            format!("229 Entering Extended Passive Mode (|||{p}|)\r\n")
                        }
                        "LIST" => {
                            w.write_all(b"150 listing\r\n").await.unwrap();
                            let (mut d, _) = data.take().unwrap().accept().await.unwrap();
                            d.write_all(
                                b"-rw-r--r-- 1 ftp ftp 2 Mar 01 10:00 kept.csv\r\n\
                                  -rw-r--r-- 1 ftp ftp 2 Mar 01 10:00 gone.csv\r\n",
                            )
                            .await
                            .unwrap();
                            drop(d);
                            "226 done\r\n".to_string()
                        }
                        "MDTM" if arg.ends_with("gone.csv") => {
                            "550 gone.csv: No such file or directory\r\n".to_string()
                        }
                        "MDTM" => "213 20260301100007\r\n".to_string(),
                        "QUIT" => "221 bye\r\n".to_string(),
                        _ => "502 not here\r\n".to_string(),
                    };
                    if w.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_file_gone_between_list_and_mdtm_is_left_out_not_an_error() {
    let port = list_then_gone_server().await;
    let src = FtpSource::connect("vendor", &settings(port, None, "127.0.0.1"), 2)
        .await
        .unwrap();
    let listed = src.list("/in", false).await.expect("the listing succeeds");
    let names: Vec<&str> = listed.iter().map(|e| e.relative.as_str()).collect();
    assert_eq!(names, vec!["kept.csv"]);
    let exact = chrono::NaiveDate::from_ymd_opt(2026, 3, 1)
        .unwrap()
        .and_hms_opt(10, 0, 7)
        .unwrap()
        .and_utc()
        .timestamp();
    assert_eq!(listed[0].mtime, exact, "MDTM's exact second");
    // A refused command names the reply once (the reply text repeats its
    // code).
    let err = src
        .open("/in/gone.csv", 0)
        .await
        .err()
        .expect("RETR is refused");
    assert!(
        err.chain().contains("server replied 502 not here"),
        "{}",
        err.chain()
    );
}
