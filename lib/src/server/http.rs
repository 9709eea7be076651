//! Serving one listener: HTTP/1.1 (hyper) with the limits an endpoint reachable from the
//! internet needs, so that no client can hold the service open by being slow or idle.
//!
//! - **Headers**: a request's head must arrive within `header_read_timeout`, counted from the
//!   moment the connection is ready for a request (accepted, or its previous answer sent):
//!   hyper's own timer. A client dripping header bytes is cut off, and so is one that connects
//!   and sends nothing.
//! - **Body**: the whole body must arrive within `body_read_timeout` of the head, whatever its
//!   pace (a deadline on the body, not a gap between chunks).
//! - **Idle**: a kept-alive connection with no request in progress for `idle_timeout` is
//!   closed.
//! - **Connections**: at most `max_connections` at once. When full, the connection idle the
//!   longest is closed to make room; when none is idle, the new connection is closed at once
//!   (the file descriptor it would hold is what the cap protects).
//! - **Framing**: a request head with both `Content-Length` and `Transfer-Encoding` is refused
//!   with 400 and the connection closed: a proxy in front that reads the other header would
//!   see a different request (request smuggling). hyper alone would honour `Transfer-Encoding`
//!   and close after.
//!
//! Size limits (from `Content-Length`, before reading) are each endpoint's own, in its router.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt as _;

use crate::config::Limits;
use crate::telemetry;

/// Serve `router` on `listener` under `limits` until `stopped` turns true; then stop
/// accepting, ask every connection to finish its request and close, and return when all have.
pub(crate) async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) {
    let cap = limits.max_connections.unwrap_or_else(connection_budget);
    let connections = Arc::new(Connections::default());
    let reaper = tokio::spawn(reap_idle(Arc::clone(&connections), limits.idle_timeout));
    let mut accept_errors_logged = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                // Out of file descriptors (EMFILE), or a connection reset before accept: wait
                // a little rather than spin.
                if !accept_errors_logged {
                    tracing::warn!(listener = name, %error, "cannot accept a connection");
                    accept_errors_logged = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        accept_errors_logged = false;
        if connections.len() >= cap && !connections.shed_idle() {
            metrics::counter!(telemetry::CONNECTIONS_REFUSED, "listener" => name).increment(1);
            drop(tcp);
            continue;
        }
        // Answers are one small write each: send them at once rather than after the peer's ACK.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let state = connections.add();
        let (connections, router, stopped) =
            (Arc::clone(&connections), router.clone(), stopped.clone());
        tokio::spawn(async move {
            serve_connection(tcp, router, &limits, Arc::clone(&state), stopped).await;
            connections.remove(&state);
        });
    }
    reaper.abort();
    connections.close_all();
    connections.wait_empty().await;
}

async fn serve_connection(
    tcp: TcpStream,
    router: Router,
    limits: &Limits,
    state: Arc<Connection>,
    mut stopped: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Scanned {
        inner: tcp,
        scan: HeadScan::default(),
        state: Arc::clone(&state),
    });
    let service = ConnectionService {
        router,
        state: Arc::clone(&state),
        body_read_timeout: limits.body_read_timeout,
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = state.close.notified(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = stopped.wait_for(|s| *s), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Close connections idle longer than `idle_timeout`, checking twice per period.
async fn reap_idle(connections: Arc<Connections>, idle_timeout: Duration) {
    let mut every = tokio::time::interval((idle_timeout / 2).max(Duration::from_millis(100)));
    loop {
        every.tick().await;
        connections.close_idle_for(idle_timeout);
    }
}

/// The open connections of one listener.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next: AtomicU64,
    empty: Notify,
    epoch: OnceInstant,
}

/// An `Instant` all connection times of a listener are counted from (as milliseconds, so they
/// fit an atomic).
struct OnceInstant(Instant);

impl Default for OnceInstant {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl OnceInstant {
    fn millis(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// One connection, as the listener sees it.
struct Connection {
    id: u64,
    /// Requests in progress.
    active: AtomicUsize,
    /// When the last request finished (or the connection opened), ms since the listener's epoch.
    idle_since: AtomicU64,
    /// Asked to close (idle too long, shed, or shutting down).
    closing: AtomicBool,
    close: Notify,
    /// A request head with both `Content-Length` and `Transfer-Encoding` came in.
    ambiguous: AtomicBool,
    epoch: Instant,
}

impl Connection {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn ask_to_close(&self) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            self.close.notify_one();
        }
    }
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn add(&self) -> Arc<Connection> {
        let connection = Arc::new(Connection {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            active: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.epoch.millis()),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            ambiguous: AtomicBool::new(false),
            epoch: self.epoch.0,
        });
        self.lock().insert(connection.id, Arc::clone(&connection));
        connection
    }

    fn remove(&self, connection: &Connection) {
        let mut open = self.lock();
        open.remove(&connection.id);
        if open.is_empty() {
            self.empty.notify_waiters();
        }
    }

    /// Close the connection idle the longest, if any is idle; whether one was.
    fn shed_idle(&self) -> bool {
        let open = self.lock();
        let oldest = open
            .values()
            .filter(|c| c.active.load(Ordering::Acquire) == 0 && !c.closing.load(Ordering::Acquire))
            .min_by_key(|c| c.idle_since.load(Ordering::Acquire));
        match oldest {
            Some(connection) => {
                connection.ask_to_close();
                true
            }
            None => false,
        }
    }

    fn close_idle_for(&self, idle_timeout: Duration) {
        let limit = u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let now = self.epoch.millis();
        for connection in self.lock().values() {
            let idle = connection.active.load(Ordering::Acquire) == 0
                && now.saturating_sub(connection.idle_since.load(Ordering::Acquire)) >= limit;
            if idle {
                connection.ask_to_close();
            }
        }
    }

    fn close_all(&self) {
        for connection in self.lock().values() {
            connection.ask_to_close();
        }
    }

    async fn wait_empty(&self) {
        loop {
            let notified = self.empty.notified();
            if self.len() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// The per-connection service: refuses ambiguous framing, bounds the body's arrival, counts
/// the requests in progress, and hands the rest to the router.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    state: Arc<Connection>,
    body_read_timeout: Duration,
}

/// Marks a connection busy while a request is in progress, idle again when its answer is done
/// (or the request is dropped with the connection).
struct InProgress(Arc<Connection>);

impl InProgress {
    fn start(connection: &Arc<Connection>) -> Self {
        connection.active.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(connection))
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Release);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if self.state.ambiguous.load(Ordering::Acquire) {
            self.state.ask_to_close();
            return Box::pin(std::future::ready(Ok(ambiguous_framing())));
        }
        let in_progress = InProgress::start(&self.state);
        let deadline = self.body_read_timeout;
        let request = request.map(|body| Body::new(Deadline::new(body, deadline)));
        let answer = self.router.clone().oneshot(request);
        Box::pin(async move {
            let response = answer.await;
            drop(in_progress);
            response
        })
    }
}

fn ambiguous_framing() -> Response<Body> {
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": "a request must not carry both Content-Length and Transfer-Encoding",
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that must arrive in full before a deadline.
struct Deadline {
    body: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(body: Incoming, within: Duration) -> Self {
        Self {
            body,
            sleep: Box::pin(tokio::time::sleep(within)),
        }
    }
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
struct BodyTimedOut;

impl hyper::body::Body for Deadline {
    type Data = hyper::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The TCP stream, with every byte read also passed through [`HeadScan`].
struct Scanned {
    inner: TcpStream,
    scan: HeadScan,
    state: Arc<Connection>,
}

impl AsyncRead for Scanned {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result
            && let Some(new) = buf.filled().get(before..)
            && this.scan.feed(new)
        {
            this.state.ambiguous.store(true, Ordering::Release);
        }
        result
    }
}

impl AsyncWrite for Scanned {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Finds request heads in the bytes a connection receives and tells whether one carries both
/// `Content-Length` and `Transfer-Encoding`. Line by line: a request line (`… HTTP/1.x`) opens
/// a head, an empty line closes it. It parses nothing else: hyper does. Body bytes that look
/// like a head can only make it refuse more, never less.
#[derive(Default)]
pub(crate) struct HeadScan {
    line: Vec<u8>,
    in_head: bool,
    content_length: bool,
    transfer_encoding: bool,
}

/// Longer lines are cut (hyper refuses heads that large anyway); a header name fits easily.
const MAX_LINE: usize = 256;

impl HeadScan {
    /// Feed received bytes; true when a head with both headers was completed.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut ambiguous = false;
        for &b in bytes {
            if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
            if b == b'\n' {
                ambiguous |= self.end_line();
                self.line.clear();
            }
        }
        ambiguous
    }

    fn end_line(&mut self) -> bool {
        let line = self.line.as_slice();
        if !self.in_head {
            let request_line = [&b" HTTP/1.1\r\n"[..], b" HTTP/1.0\r\n", b" HTTP/1.1\n"]
                .iter()
                .any(|end| line.ends_with(end));
            if request_line {
                self.in_head = true;
                self.content_length = false;
                self.transfer_encoding = false;
            }
            return false;
        }
        if line == b"\r\n" || line == b"\n" {
            self.in_head = false;
            return self.content_length && self.transfer_encoding;
        }
        let starts = |name: &[u8]| {
            line.get(..name.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(name))
        };
        self.content_length |= starts(b"content-length:");
        self.transfer_encoding |= starts(b"transfer-encoding:");
        false
    }
}

/// How many connections the process can hold open: its file-descriptor limit, less a reserve
/// for Redis, key fetches, logs and the other listeners. Linux: `/proc/self/limits`; elsewhere
/// (or unreadable) 1,024 is assumed.
pub(crate) fn connection_budget() -> usize {
    const RESERVE: usize = 64;
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|soft| soft.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    limit.saturating_sub(RESERVE).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> bool {
        let mut scan = HeadScan::default();
        chunks
            .iter()
            .fold(false, |seen, chunk| seen | scan.feed(chunk))
    }

    #[test]
    fn heads_with_both_framing_headers_are_found_across_reads() {
        let both = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(scan(&[both]));
        let (a, b) = both.split_at(37);
        assert!(scan(&[a, b]), "split inside a header name");
        let one_byte: Vec<&[u8]> = both.chunks(1).collect();
        assert!(scan(&one_byte));
        let lower = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 1\r\n\r\n";
        assert!(scan(&[lower]));
    }

    #[test]
    fn ordinary_requests_pass() {
        let cl = b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n";
        assert!(!scan(&[cl]));
        let te = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert!(!scan(&[te]));
        // The second request of a kept-alive connection is ambiguous, the first was not.
        let mut scan = HeadScan::default();
        assert!(!scan.feed(cl));
        assert!(scan.feed(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n"));
    }

    #[test]
    fn the_budget_keeps_a_reserve() {
        let budget = connection_budget();
        assert!(budget >= 16);
    }
}
