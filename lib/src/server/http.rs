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
//! - **Admission** ([`admission`](super::admission)): a request's head and body must keep a
//!   minimum data rate after a short grace; one source holds a bounded number of connections;
//!   when the listener is full the connection making the least progress gives way (never a
//!   request being handled); trusted senders have places of their own.
//! - **Framing**: a request head with both `Content-Length` and `Transfer-Encoding` is refused
//!   with 400 and the connection closed ([`HeadScan`]). hyper alone would honour
//!   `Transfer-Encoding` and close after.
//!
//! Size limits (from `Content-Length`, before reading) are each endpoint's own, in its router.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt as _;

use super::admission::{Close, Connection, Connections, Phase, Rules};
pub(crate) use super::head_scan::HeadScan;
use crate::config::Limits;
use crate::telemetry;

/// How often the rate and idle rules are applied.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

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
    let connections = Arc::new(Connections::new(Rules::new(cap, &limits)));
    let sweeper = tokio::spawn(sweep(name, Arc::clone(&connections)));
    let limits = Arc::new(limits);
    let mut accept_errors_logged = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
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
        let state = match connections.admit(peer.ip()) {
            Ok((state, shed)) => {
                for reason in shed {
                    metrics::counter!(telemetry::CONNECTIONS_SHED, "listener" => name, "reason" => reason.label())
                        .increment(1);
                }
                state
            }
            Err(refused) => {
                metrics::counter!(telemetry::CONNECTIONS_REFUSED, "listener" => name, "reason" => refused.label())
                    .increment(1);
                drop(tcp);
                continue;
            }
        };
        // Answers are one small write each: send them at once rather than after the peer's ACK.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let (connections, router, stopped, limits) = (
            Arc::clone(&connections),
            router.clone(),
            stopped.clone(),
            Arc::clone(&limits),
        );
        tokio::spawn(async move {
            serve_connection(tcp, router, &limits, Arc::clone(&state), stopped).await;
            connections.remove(&state);
        });
    }
    sweeper.abort();
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
            () = state.close.notified() => match state.closing() {
                // Too slow, or its place given to another: the socket is dropped mid-request.
                Some(Close::Now) => return,
                _ if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ => {}
            },
            _ = stopped.wait_for(|s| *s), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Apply the rate and idle rules every [`SWEEP_EVERY`], counting what they close.
async fn sweep(name: &'static str, connections: Arc<Connections>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for reason in connections.sweep() {
            metrics::counter!(telemetry::CONNECTIONS_SHED, "listener" => name, "reason" => reason.label())
                .increment(1);
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

/// A request in progress: its body arriving, then being handled; waiting for the next request
/// again when its answer is done (or the request is dropped with the connection).
struct InProgress(Arc<Connection>);

impl InProgress {
    fn start(connection: &Arc<Connection>, has_body: bool) -> Self {
        connection.enter(if has_body {
            Phase::Body
        } else {
            Phase::Handling
        });
        Self(Arc::clone(connection))
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.enter(Phase::Waiting);
    }
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if self.state.ambiguous.load(Ordering::Acquire) {
            self.state.ask_to_close(Close::Graceful);
            return Box::pin(std::future::ready(Ok(ambiguous_framing())));
        }
        let has_body = !hyper::body::Body::is_end_stream(request.body());
        let in_progress = InProgress::start(&self.state, has_body);
        let deadline = self.body_read_timeout;
        let state = Arc::clone(&self.state);
        let request = request.map(|body| Body::new(Deadline::new(body, deadline, state)));
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

/// A request body that must arrive in full before a deadline; its end starts the handling of
/// the request (which admission never sheds).
struct Deadline {
    body: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    connection: Arc<Connection>,
}

impl Deadline {
    fn new(body: Incoming, within: Duration, connection: Arc<Connection>) -> Self {
        Self {
            body,
            sleep: Box::pin(tokio::time::sleep(within)),
            connection,
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
            if frame.is_none() || self.body.is_end_stream() {
                self.connection.enter(Phase::Handling);
            }
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
        {
            this.state.received(new.len());
            if this.scan.feed(new) {
                this.state.ambiguous.store(true, Ordering::Release);
            }
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

    #[test]
    fn the_budget_keeps_a_reserve() {
        let budget = connection_budget();
        assert!(budget >= 16);
    }
}
