//! A loopback TCP proxy that cuts connections once they have carried a
//! number of bytes from the server (the "network drops mid-download"
//! fault), or freezes them there: no byte more in either direction while
//! the sockets stay open, as a SIGSTOPped server or a black-holed network
//! looks. Whichever connection passes the mark first is hit (a client may
//! send a download over any of its pooled connections), up to a count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A running proxy; stops when dropped.
pub struct CuttingProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Connections cut so far.
    pub cuts: Arc<AtomicUsize>,
    stop: CancellationToken,
}

/// What happens to a connection once its byte budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Both halves are closed.
    Cut,
    /// Nothing more is forwarded; the connection stays open until the
    /// proxy stops.
    Freeze,
}

impl CuttingProxy {
    /// Forwards to `target`; a connection is closed once it has carried
    /// `cut_after` bytes from the server, until `cut_connections` have been.
    pub async fn start(
        target: SocketAddr,
        cut_after: u64,
        cut_connections: usize,
    ) -> std::io::Result<CuttingProxy> {
        Self::start_with(target, cut_after, cut_connections, Fault::Cut).await
    }

    /// Like [`start`](Self::start), with the `fault` to inject.
    pub async fn start_with(
        target: SocketAddr,
        cut_after: u64,
        cut_connections: usize,
        fault: Fault,
    ) -> std::io::Result<CuttingProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let connections = Arc::new(AtomicUsize::new(0));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (stopped, conns, cut_count) = (stop.clone(), connections.clone(), cuts.clone());
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    r = listener.accept() => match r { Ok((c, _)) => c, Err(_) => continue },
                    () = stopped.cancelled() => break,
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let cut_count = cut_count.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let frozen_up = frozen.clone();
                    let held = stopped.clone();
                    let up = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if frozen_up.load(Ordering::SeqCst) {
                                held.cancelled().await;
                                return;
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let held = stopped.clone();
                    let sent = Arc::new(AtomicU64::new(0));
                    let down = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let total = sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                            let hit = total > cut_after
                                && cut_count
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                                        (c < cut_connections).then_some(c + 1)
                                    })
                                    .is_ok();
                            if hit {
                                if fault == Fault::Freeze {
                                    // Keep both sockets open and silent.
                                    frozen.store(true, Ordering::SeqCst);
                                    held.cancelled().await;
                                }
                                return; // dropping both halves cuts the connection
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        () = up => {}
                        () = down => {}
                        () = stopped.cancelled() => {}
                    }
                });
            }
        });
        Ok(CuttingProxy {
            addr,
            connections,
            cuts,
            stop,
        })
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
