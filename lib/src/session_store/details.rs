//! Session details for the central view: when a logged-in session was last seen and — when the
//! application turns it on — from which user agent and address, recorded in the session as its
//! requests arrive ([`SessionDetails::layer`]). The admin API, the CLI and a user's own session
//! list ([`OwnSessions`](super::OwnSessions)) show them.
//!
//! The last-seen time is written at most once a minute per session (a write makes the session
//! store save it), so an active session costs one store write a minute, not one per request.
//! The client address is the peer's, or, when the peer is a trusted proxy, the nearest address
//! in `X-Forwarded-For` that is not one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Response, header};
use serde::{Deserialize, Serialize};

use super::middleware::{PerRequest, Sealed, SessionLayer};
use super::{CHECK_KEY, SessionAccess};
use crate::net::{Network, NotANetwork};
use crate::sys::unix_now;

/// The session data key of the details.
pub const DETAILS_KEY: &str = "oidc_logout.details";

/// The longest user agent kept, in characters.
const MAX_USER_AGENT: usize = 256;

/// What is recorded of a session's use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Details {
    /// When a request of the session last arrived (seconds since the epoch; to the minute).
    #[serde(rename = "seen")]
    pub(crate) last_seen: u64,
    #[serde(rename = "ua", default, skip_serializing_if = "Option::is_none")]
    pub(crate) user_agent: Option<String>,
    #[serde(rename = "ip", default, skip_serializing_if = "Option::is_none")]
    pub(crate) address: Option<String>,
}

/// What to record of each logged-in session's requests: by default the last-seen time only.
///
/// ```
/// use oidc_logout::session_store::SessionDetails;
///
/// // Remember when each session was last seen, from which browser and address (behind one
/// // trusted proxy), for the user's and the admin's session lists.
/// let details = SessionDetails::new()
///     .with_client_details()
///     .with_trusted_proxy("10.0.0.0/8")?;
/// let app: axum::Router = axum::Router::new().layer(details.layer::<tower_sessions::Session>());
/// # Ok::<(), oidc_logout::session_store::NotANetwork>(())
/// ```
#[derive(Debug, Clone)]
pub struct SessionDetails {
    client: bool,
    trusted: Vec<Network>,
    every: Duration,
}

impl Default for SessionDetails {
    fn default() -> Self {
        Self {
            client: false,
            trusted: Vec::new(),
            every: Duration::from_secs(60),
        }
    }
}

impl SessionDetails {
    /// Record the last-seen time only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also record the user agent and client address (personal data: tell your users).
    #[must_use]
    pub fn with_client_details(mut self) -> Self {
        self.client = true;
        self
    }

    /// Trust `X-Forwarded-For` from peers in this network (`10.0.0.0/8`) or at this address.
    pub fn with_trusted_proxy(mut self, network: &str) -> Result<Self, NotANetwork> {
        self.trusted
            .push(Network::parse(network.trim()).ok_or(NotANetwork)?);
        Ok(self)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
    }

    /// The client's address: the peer's, or behind trusted proxies the nearest untrusted hop of
    /// `X-Forwarded-For`.
    fn address(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut address = peer?;
        if !self.trusted(address) {
            return Some(address);
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // A hop that is not an address: stop at the last one known.
                break;
            };
            address = ip;
            if !self.trusted(ip) {
                break;
            }
        }
        Some(address)
    }

    /// What to record for a request now, given what is recorded.
    fn update(
        &self,
        recorded: Option<Details>,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
        now: u64,
    ) -> Option<Details> {
        let mut details = Details {
            last_seen: now,
            ..Details::default()
        };
        if self.client {
            details.user_agent = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| {
                    ua.chars()
                        .filter(|c| !c.is_control())
                        .take(MAX_USER_AGENT)
                        .collect()
                });
            details.address = self.address(peer, headers).map(|ip| ip.to_string());
        }
        let fresh = recorded.as_ref().is_some_and(|r| {
            now.saturating_sub(r.last_seen) < self.every.as_secs()
                && r.user_agent == details.user_agent
                && r.address == details.address
        });
        (!fresh).then_some(details)
    }

    /// A tower layer recording the details of each logged-in session's requests (inside the
    /// session layer). `T` is the application's tower-sessions `Session` (0.14 or 0.15):
    /// `details.layer::<Session>()`. The client address needs axum's `ConnectInfo<SocketAddr>`
    /// (`into_make_service_with_connect_info`).
    pub fn layer<T: SessionAccess + Clone + 'static>(&self) -> SessionLayer<Self, T> {
        SessionLayer::new(self.clone())
    }
}

impl Sealed for SessionDetails {}

impl PerRequest for SessionDetails {
    async fn before<T: SessionAccess>(
        &self,
        session: &T,
        request: &Parts,
    ) -> Option<Response<Body>> {
        // Only logged-in sessions; a failure to record is not the request's problem.
        if let Ok(Some(_)) = session.get_value(CHECK_KEY).await {
            let peer = request
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            let recorded = session
                .get_value(DETAILS_KEY)
                .await
                .ok()
                .flatten()
                .and_then(|v| Details::deserialize(v).ok());
            if let Some(update) = self.update(recorded, &request.headers, peer, unix_now())
                && let Ok(value) = serde_json::to_value(update)
            {
                let _ = session.insert_value(DETAILS_KEY, value).await;
            }
        }
        None
    }
}

/// The details a session record of this crate's store holds, if any.
pub(crate) fn details_of(
    data: &std::collections::HashMap<String, serde_json::Value>,
) -> Option<Details> {
    data.get(DETAILS_KEY)
        .and_then(|v| Details::deserialize(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let details = SessionDetails::new()
            .with_client_details()
            .with_trusted_proxy("10.0.0.0/8")
            .and_then(|d| d.with_trusted_proxy("::1"))
            .expect("networks");
        let xff = headers(&[("x-forwarded-for", "203.0.113.7, 10.1.2.3")]);
        // From a proxy: the nearest untrusted hop.
        assert_eq!(
            details.address(Some(ip("10.9.9.9")), &xff),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            details.address(Some(ip("::1")), &xff),
            Some(ip("203.0.113.7"))
        );
        // From anyone else: the peer, whatever the header says.
        assert_eq!(
            details.address(Some(ip("198.51.100.1")), &xff),
            Some(ip("198.51.100.1"))
        );
        // A forged hop before a bad one is not believed past it.
        let bad = headers(&[("x-forwarded-for", "1.2.3.4, nonsense, 10.0.0.2")]);
        assert_eq!(
            details.address(Some(ip("10.0.0.1")), &bad),
            Some(ip("10.0.0.2"))
        );
        assert!(
            SessionDetails::new()
                .with_trusted_proxy("10.0.0.0/33")
                .is_err()
        );
        assert!(
            SessionDetails::new()
                .with_trusted_proxy("example.com")
                .is_err()
        );
        let mapped = Network::parse("192.168.0.0/16").expect("net");
        assert!(mapped.contains(ip("::ffff:192.168.4.5")));
        assert!(!mapped.contains(ip("192.169.0.1")));
        let written_mapped = Network::parse("::ffff:10.0.0.0/104").expect("net");
        assert!(written_mapped.contains(ip("10.1.2.3")));
        assert!(written_mapped.contains(ip("::ffff:10.1.2.3")));
        assert!(!written_mapped.contains(ip("11.0.0.1")));
    }

    #[test]
    fn the_last_seen_time_is_written_at_most_once_a_minute() {
        let details = SessionDetails::new();
        let none = HeaderMap::new();
        let first = details.update(None, &none, None, 1000).expect("first");
        assert_eq!(first.last_seen, 1000);
        assert_eq!(details.update(Some(first.clone()), &none, None, 1059), None);
        assert!(details.update(Some(first), &none, None, 1060).is_some());
        // Client details off: nothing but the time, whatever the request carries.
        let ua = headers(&[("user-agent", "Mozilla/5.0\t(X11)")]);
        let off = details
            .update(None, &ua, Some(ip("1.2.3.4")), 1)
            .expect("update");
        assert_eq!((off.user_agent, off.address), (None, None));
        let on = SessionDetails::new().with_client_details();
        let seen = on
            .update(None, &ua, Some(ip("1.2.3.4")), 1)
            .expect("update");
        assert_eq!(seen.user_agent.as_deref(), Some("Mozilla/5.0(X11)"));
        assert_eq!(seen.address.as_deref(), Some("1.2.3.4"));
        // Another address: written at once.
        assert!(on.update(Some(seen), &ua, Some(ip("5.6.7.8")), 2).is_some());
    }
}
