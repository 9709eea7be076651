//! What operators see: the names of the metrics the library records, and the layers that give
//! each HTTP request an id, a tracing span and a latency measurement.
//!
//! Metrics go through the [`metrics`] facade: the library records, and whoever runs it decides
//! where they go (the `oidc-logout` binary exports them in Prometheus format on its own
//! listener; an application embedding the receiver installs its own recorder, or none, in
//! which case recording costs next to nothing). Labels hold only bounded values (outcomes,
//! rejection reasons, configured issuers, route templates), never ids from requests.

// Each metric is counted by the parts that are compiled in: all of them with `server` and
// `denylist`.
#![cfg_attr(not(all(feature = "server", feature = "denylist")), allow(dead_code))]

use axum::http::HeaderName;

/// Back-channel logouts handled, by `outcome` (`applied`; `no_session`, applied but ending no
/// session, with `named`: `sid`, `sub` or `sid_sub`, what the token named; `rejected`;
/// `unavailable`) and, for rejections, `reason` (a
/// [`Rejection::reason`](crate::logout_token::Rejection::reason) or `content_type`, `body`,
/// `form`).
pub(crate) const LOGOUTS: &str = "oidc_logout_logouts_total";
/// Sessions ended by logouts.
pub(crate) const SESSIONS_ENDED: &str = "oidc_logout_sessions_ended_total";
/// JWKS fetches, by `issuer` and `result` (`ok`, `error`).
pub(crate) const JWKS_FETCHES: &str = "oidc_logout_jwks_fetches_total";
/// Redis calls that failed, by `operation`.
pub(crate) const REDIS_ERRORS: &str = "oidc_logout_redis_errors_total";
/// HTTP request latency in seconds, by `path` (route template) and `status`.
#[doc(hidden)]
pub const REQUEST_DURATION: &str = "oidc_logout_http_request_duration_seconds";
/// Refresh tokens revoked after logouts, by `result` (`revoked`, `failed`).
pub(crate) const REFRESH_REVOCATIONS: &str = "oidc_logout_refresh_token_revocations_total";
/// Seconds the access-token denylist has been unable to confirm it is in sync (0 when in sync).
pub(crate) const DENYLIST_UNSYNCED: &str = "oidc_logout_denylist_unsynced_seconds";
/// Access-token denylist markers held in memory.
pub(crate) const DENYLIST_MARKERS: &str = "oidc_logout_denylist_markers";
/// Requests the denylist layer refused, by `reason` (`revoked`, `out_of_sync`, `invalid_token`,
/// `missing_token`).
pub(crate) const DENYLIST_REFUSALS: &str = "oidc_logout_denylist_refusals_total";

/// Security Event Tokens received, by `outcome` (`applied`, `duplicate`, `rejected` with the
/// RFC 8935 `reason`, `unavailable`).
pub(crate) const SECURITY_EVENTS: &str = "oidc_logout_security_events_total";

/// FusionAuth webhooks received, by `outcome` (`applied`, `ignored`, `duplicate`,
/// `unauthenticated`, `invalid_request`, `temporarily_unavailable`).
pub(crate) const WEBHOOKS: &str = "oidc_logout_webhooks_total";

/// New connections closed at once because the listener (`full`) or their source
/// (`per_source`) held as many as it may and none could give way, by `listener` (`main`,
/// `metrics`, `admin`) and `reason`.
pub(crate) const CONNECTIONS_REFUSED: &str = "oidc_logout_connections_refused_total";

/// Open connections closed by the listener, by `listener` and `reason`: `slow` (a request
/// behind the minimum data rate), `idle` (no request for the idle timeout), `full` and
/// `per_source` (its place given to a new connection).
pub(crate) const CONNECTIONS_SHED: &str = "oidc_logout_connections_shed_total";

/// Requests refused before they were authenticated (a wrong bearer token, a bad signature), by
/// `input` and `reason`. Logged as an aggregate per interval, never a line per request, so that
/// nobody can fill the logs by sending garbage.
pub(crate) const UNAUTHENTICATED: &str = "oidc_logout_unauthenticated_total";

/// How often the refusals of unauthenticated requests are logged, at most.
#[cfg_attr(
    not(any(
        feature = "admin",
        feature = "scim",
        feature = "fusionauth",
        feature = "universal-logout"
    )),
    allow(dead_code)
)]
const UNAUTHENTICATED_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Count a request refused before it was authenticated, and log the counts per input and reason
/// at most once per interval: the first refusal after a quiet interval at once, the others
/// summed up when the interval is over (with the next refusal).
#[cfg_attr(
    not(any(
        feature = "admin",
        feature = "scim",
        feature = "fusionauth",
        feature = "universal-logout"
    )),
    allow(dead_code)
)]
pub(crate) fn refused_unauthenticated(input: &'static str, reason: &'static str) {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::Instant;

    struct Window {
        started: Option<Instant>,
        counts: BTreeMap<(&'static str, &'static str), u64>,
    }
    static WINDOW: OnceLock<Mutex<Window>> = OnceLock::new();

    metrics::counter!(UNAUTHENTICATED, "input" => input, "reason" => reason).increment(1);
    let window = WINDOW.get_or_init(|| {
        Mutex::new(Window {
            started: None,
            counts: BTreeMap::new(),
        })
    });
    let mut window = window
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = Instant::now();
    match window.started {
        Some(started) if now.duration_since(started) < UNAUTHENTICATED_LOG_EVERY => {
            *window.counts.entry((input, reason)).or_default() += 1;
        }
        _ => {
            for ((input, reason), count) in std::mem::take(&mut window.counts) {
                tracing::warn!(
                    input,
                    reason,
                    count,
                    "{} refused {count} more times before authentication",
                    reason.replace('_', " ")
                );
            }
            tracing::warn!(
                input,
                reason,
                "{} refused before authentication (more are counted, and logged as a sum every 10 s)",
                reason.replace('_', " ")
            );
            window.started = Some(now);
        }
    }
}

/// Latency buckets (seconds) for [`REQUEST_DURATION`]: a logout takes about a millisecond.
#[doc(hidden)]
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The header that carries a request's id, in and out.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[cfg(feature = "server")]
pub use layer::observe;

/// The request layers (feature `server`, which brings tower-http's request ids).
#[cfg(feature = "server")]
mod layer {
    use std::time::Instant;

    use axum::Router;
    use axum::extract::{MatchedPath, Request};
    use axum::http::HeaderValue;
    use axum::middleware::Next;
    use axum::response::Response;
    use tower::ServiceBuilder;
    use tower::util::MapRequestLayer;
    use tower_http::request_id::{
        MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
    };
    use tracing::Instrument as _;

    use super::{REQUEST_DURATION, REQUEST_ID, is_acceptable_id, new_request_id, outcome_of};

    /// Wrap a router so that each request has an id (the caller's `X-Request-Id` when it is short
    /// and printable, or a new one), returned in the response, and runs in a span carrying it (so
    /// every log line of the request names it), with its latency recorded in
    /// [`REQUEST_DURATION`].
    ///
    /// Every response also gets `Cache-Control: no-store`, and `Retry-After` when it is a 503,
    /// 404s included: this is the outermost layer of the server's listeners.
    pub fn observe(router: Router) -> Router {
        router.layer(
            ServiceBuilder::new()
                .layer(MapRequestLayer::new(drop_unacceptable_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID, NewRequestId))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(crate::response::retry_after())
                .layer(crate::response::no_store())
                .layer(axum::middleware::from_fn(span_and_latency)),
        )
    }

    fn drop_unacceptable_id(mut request: Request) -> Request {
        let acceptable = request
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_acceptable_id);
        if !acceptable {
            request.headers_mut().remove(&REQUEST_ID);
        }
        request
    }

    #[derive(Clone, Copy)]
    struct NewRequestId;

    impl MakeRequestId for NewRequestId {
        fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
            HeaderValue::from_str(&new_request_id())
                .ok()
                .map(RequestId::new)
        }
    }

    async fn span_and_latency(request: Request, next: Next) -> Response {
        let started = Instant::now();
        let id = request
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let path = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str)
            .to_owned();
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            method = %request.method(),
            path,
            status = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let response = next.run(request).instrument(span.clone()).await;
        let status = response.status();
        span.record("status", status.as_u16());
        span.record("outcome", outcome_of(status));
        metrics::histogram!(REQUEST_DURATION, "path" => path, "status" => response.status().as_str().to_owned())
            .record(started.elapsed().as_secs_f64());
        response
    }
}

/// A request's outcome, from its answer's status: `ok` (2xx, 3xx), `refused` (4xx: the sender's
/// request was wrong or not authenticated), `failed` (5xx: this side or its store failed). The
/// core's own outcome (`applied`, `no_session`, …) is on the request's `core.apply` span.
#[cfg(any(test, feature = "server"))]
pub(crate) fn outcome_of(status: axum::http::StatusCode) -> &'static str {
    if status.is_server_error() {
        "failed"
    } else if status.is_client_error() {
        "refused"
    } else {
        "ok"
    }
}

#[cfg(any(test, feature = "server"))]
/// A caller's request id is kept when it is 1 to 128 visible ASCII characters: anything else
/// could forge log lines or bloat them.
pub(crate) fn is_acceptable_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// 16 random hex digits.
#[cfg(any(test, feature = "server"))]
pub(crate) fn new_request_id() -> String {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // No randomness: a timestamp still tells requests apart in logs.
        return format!(
            "{:x}",
            std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos())
        );
    }
    format!("{:016x}", u64::from_ne_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_bounded_and_printable() {
        assert!(is_acceptable_id("abc-123"));
        assert!(!is_acceptable_id(""));
        assert!(!is_acceptable_id("a b"));
        assert!(!is_acceptable_id("line\nbreak"));
        assert!(!is_acceptable_id(&"x".repeat(129)));
        let made = new_request_id();
        assert_eq!(made.len(), 16);
        assert!(is_acceptable_id(&made));
        assert_ne!(made, new_request_id());
    }
}
