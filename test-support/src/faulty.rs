//! A TCP proxy in front of an OP that fails as an OP can fail, switched at run time: it passes
//! the bytes through, hangs (accepts and never answers, as a stopped process does), refuses
//! (closes every connection at once), answers slowly (the OP does the work at once, its answer
//! arrives late), answers `503`, or answers bytes that are not HTTP (as a broken TLS endpoint or
//! a captive proxy does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// How the OP behind the proxy fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Passes everything through.
    None = 0,
    /// Accepts connections and never answers.
    Hang = 1,
    /// Closes every connection as soon as it is accepted.
    Refuse = 2,
    /// Passes the request through at once and holds the OP's answer 8 seconds.
    Slow = 3,
    /// Answers `503 Service Unavailable` to everything.
    Unavailable = 4,
    /// Answers bytes that are not HTTP.
    Garbage = 5,
}

impl Fault {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Hang,
            2 => Self::Refuse,
            3 => Self::Slow,
            4 => Self::Unavailable,
            5 => Self::Garbage,
            _ => Self::None,
        }
    }
}

/// The proxy; it stops when dropped with the test's runtime.
pub struct FaultyProxy {
    pub addr: SocketAddr,
    fault: Arc<AtomicU8>,
    changed: tokio::sync::watch::Sender<u8>,
}

impl FaultyProxy {
    /// A proxy on `listener` to `upstream`, passing everything through for now.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> Self {
        let addr = listener.local_addr().expect("addr");
        let fault = Arc::new(AtomicU8::new(Fault::None as u8));
        let (changed, _) = tokio::sync::watch::channel(Fault::None as u8);
        let (current, watch) = (Arc::clone(&fault), changed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let fault = Fault::from_u8(current.load(Ordering::Acquire));
                tokio::spawn(handle(client, upstream, fault, watch.subscribe()));
            }
        });
        Self {
            addr,
            fault,
            changed,
        }
    }

    /// Fail this way from now on: connections passing through are closed (a client's pooled
    /// connection must not outlive the OP's health), new ones fail this way.
    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::Release);
        self.changed.send_replace(fault as u8);
    }
}

async fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    mut changed: tokio::sync::watch::Receiver<u8>,
) {
    match fault {
        Fault::None => {
            tokio::select! {
                () = pass(client, upstream) => {}
                _ = changed.changed() => {}
            }
        }
        Fault::Hang => {
            let mut sink = [0u8; 4096];
            while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Fault::Refuse => drop(client),
        Fault::Slow => {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            let request = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
            });
            tokio::time::sleep(Duration::from_secs(8)).await;
            let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
            request.abort();
        }
        Fault::Unavailable => {
            let mut head = [0u8; 4096];
            let _ = client.read(&mut head).await;
            let _ = client
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
        Fault::Garbage => {
            let mut head = [0u8; 4096];
            let _ = client.read(&mut head).await;
            let _ = client
                .write_all(b"\x15\x03\x03\x00\x02\x02\x28not http\r\n\r\n")
                .await;
        }
    }
}

async fn pass(mut client: TcpStream, upstream: SocketAddr) {
    if let Ok(mut server) = TcpStream::connect(upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}
