//! Logout markers: what a logout leaves behind so that the sessions it ended stay ended.
//!
//! A logout of (issuer, sid), (issuer, sid, sub) or (issuer, sub) issued at `iat` ends every
//! session it names authenticated at or before `iat`; ending one session by id ends that id. Each
//! leaves a marker — field `sid:<enc sid>`, `ss:<enc sid>:<enc sub>`, `sub:<enc sub>` or
//! `id:<enc id>` of the issuer's marker hash, value `<iat> <expires_at>` — that outlives every
//! session it ended. A session is ended exactly when a live marker covers it, so "is this
//! session ended?" needs no more than the markers: the Redis scripts check them before
//! registering, and each instance of an application keeps the markers of the issuers it serves in
//! memory ([`follower`](super::follower)) to answer without a round trip.

use std::collections::HashMap;

use super::SessionKey;
use super::keys::encode_component;

/// One marker: sessions it names authenticated at or before `iat` are ended, until
/// `expires_at` (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) iat: u64,
    pub(crate) expires_at: u64,
}

impl Marker {
    /// A marker from its stored value, `<iat> <expires_at>`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let (iat, expires_at) = value.split_once(' ')?;
        Some(Self {
            iat: iat.parse().ok()?,
            expires_at: expires_at.parse().ok()?,
        })
    }
}

/// The marker field of a logout of a whole OP session.
pub(crate) fn sid_field(sid: &str) -> String {
    format!("sid:{}", encode_component(sid))
}

/// The marker field of a logout of one user's sessions in an OP session.
pub(crate) fn sid_sub_field(sid: &str, sub: &str) -> String {
    format!("ss:{}:{}", encode_component(sid), encode_component(sub))
}

/// The marker field of a logout of a user.
pub(crate) fn sub_field(sub: &str) -> String {
    format!("sub:{}", encode_component(sub))
}

/// The marker field of one session ended by id.
pub(crate) fn id_field(session_id: &str) -> String {
    format!("id:{}", encode_component(session_id))
}

/// The markers of one issuer, by field.
#[derive(Debug, Default)]
pub(crate) struct Markers(HashMap<String, Marker>);

impl Markers {
    /// Markers from a full read of the issuer's hash; unreadable and expired ones are skipped.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn from_fields(fields: Vec<(String, String)>, now: u64) -> Self {
        let mut markers = Self::default();
        for (field, value) in fields {
            if let Some(marker) = Marker::parse(&value) {
                markers.apply(field, marker, now);
            }
        }
        markers
    }

    /// Merge a marker in: the later `iat` and the later expiry win.
    pub(crate) fn apply(&mut self, field: String, marker: Marker, now: u64) {
        if marker.expires_at <= now {
            return;
        }
        self.0
            .entry(field)
            .and_modify(|held| {
                held.iat = held.iat.max(marker.iat);
                held.expires_at = held.expires_at.max(marker.expires_at);
            })
            .or_insert(marker);
    }

    /// Whether a live marker ends `session`.
    pub(crate) fn covers(&self, session: &SessionKey<'_>, now: u64) -> bool {
        let live_since = |field: String, auth: u64| {
            self.0
                .get(&field)
                .is_some_and(|m| m.expires_at > now && m.iat >= auth)
        };
        live_since(id_field(session.session_id), 0)
            || live_since(sub_field(session.sub), session.auth_time)
            || session.sid.is_some_and(|sid| {
                live_since(sid_field(sid), session.auth_time)
                    || live_since(sid_sub_field(sid, session.sub), session.auth_time)
            })
    }

    /// Forget the markers that expired.
    pub(crate) fn prune(&mut self, now: u64) {
        self.0.retain(|_, m| m.expires_at > now);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session<'a>(sub: &'a str, sid: Option<&'a str>, auth_time: u64) -> SessionKey<'a> {
        SessionKey {
            issuer: "https://op.example",
            session_id: "s1",
            sub,
            sid,
            auth_time,
        }
    }

    #[test]
    fn a_marker_ends_sessions_authenticated_up_to_its_iat() {
        let mut m = Markers::default();
        m.apply(
            sub_field("alice"),
            Marker {
                iat: 100,
                expires_at: 1_000,
            },
            50,
        );
        assert!(m.covers(&session("alice", None, 100), 50));
        assert!(!m.covers(&session("alice", None, 101), 50), "a later login");
        assert!(!m.covers(&session("bob", None, 10), 50), "another user");
        assert!(!m.covers(&session("alice", None, 10), 1_000), "expired");
    }

    #[test]
    fn sid_markers_end_the_whole_op_session_or_one_users_part() {
        let mut m = Markers::default();
        let marker = Marker {
            iat: 100,
            expires_at: 1_000,
        };
        m.apply(sid_sub_field("op-1", "alice"), marker, 0);
        assert!(m.covers(&session("alice", Some("op-1"), 90), 0));
        assert!(!m.covers(&session("bob", Some("op-1"), 90), 0));
        m.apply(sid_field("op-1"), marker, 0);
        assert!(m.covers(&session("bob", Some("op-1"), 90), 0));
        assert!(!m.covers(&session("bob", Some("op-2"), 90), 0));
        assert!(!m.covers(&session("bob", None, 90), 0));
    }

    #[test]
    fn an_id_marker_ends_that_session_whatever_its_login() {
        let mut m = Markers::default();
        m.apply(
            id_field("s1"),
            Marker {
                iat: 5,
                expires_at: 1_000,
            },
            0,
        );
        assert!(m.covers(&session("anyone", None, u64::MAX), 0));
    }

    #[test]
    fn merging_keeps_the_later_iat_and_expiry_and_skips_dead_ones() {
        let mut m = Markers::from_fields(
            vec![
                (sub_field("a"), "100 500".into()),
                (sub_field("b"), "garbage".into()),
                (sub_field("c"), "100 10".into()),
            ],
            20,
        );
        assert_eq!(m.len(), 1);
        m.apply(
            sub_field("a"),
            Marker {
                iat: 50,
                expires_at: 900,
            },
            20,
        );
        assert!(m.covers(&session("a", None, 100), 800));
        m.prune(900);
        assert_eq!(m.len(), 0);
    }
}
