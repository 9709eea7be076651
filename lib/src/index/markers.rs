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
use super::keys::{decode_component, encode_component};

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

/// The marker field of a logout of a user's sessions registered without an OP session.
pub(crate) fn sidless_field(sub: &str) -> String {
    format!("ns:{}", encode_component(sub))
}

/// The marker field of one session ended by id.
pub(crate) fn id_field(session_id: &str) -> String {
    format!("id:{}", encode_component(session_id))
}

/// What a marker field names, decoded.
enum Field {
    Id(String),
    Sub(String),
    Sid(String),
    SidSub(String, String),
    Sidless(String),
}

impl Field {
    fn parse(field: &str) -> Option<Self> {
        let (kind, rest) = field.split_once(':')?;
        Some(match kind {
            "id" => Self::Id(decode_component(rest)),
            "sub" => Self::Sub(decode_component(rest)),
            "sid" => Self::Sid(decode_component(rest)),
            "ns" => Self::Sidless(decode_component(rest)),
            "ss" => {
                let (sid, sub) = rest.split_once(':')?;
                Self::SidSub(decode_component(sid), decode_component(sub))
            }
            _ => return None,
        })
    }
}

/// The markers of one issuer, by what they name (decoded once, when they arrive, so that
/// asking about a session allocates nothing).
#[derive(Debug, Default)]
pub(crate) struct Markers {
    ids: HashMap<String, Marker>,
    subs: HashMap<String, Marker>,
    sids: HashMap<String, Marker>,
    sid_subs: HashMap<String, HashMap<String, Marker>>,
    /// By user: their sessions without an OP session.
    sidless: HashMap<String, Marker>,
}

fn merge(held: &mut Marker, marker: Marker) {
    held.iat = held.iat.max(marker.iat);
    held.expires_at = held.expires_at.max(marker.expires_at);
}

fn put(map: &mut HashMap<String, Marker>, key: String, marker: Marker) {
    map.entry(key)
        .and_modify(|held| merge(held, marker))
        .or_insert(marker);
}

impl Markers {
    /// Markers from a full read of the issuer's hash; unreadable and expired ones are skipped.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn from_fields(fields: Vec<(String, String)>, now: u64) -> Self {
        let mut markers = Self::default();
        for (field, value) in fields {
            if let Some(marker) = Marker::parse(&value) {
                markers.apply(&field, marker, now);
            }
        }
        markers
    }

    /// Merge a marker in (field as stored): the later `iat` and the later expiry win. Fields of
    /// unknown kinds are ignored.
    pub(crate) fn apply(&mut self, field: &str, marker: Marker, now: u64) {
        if marker.expires_at <= now {
            return;
        }
        match Field::parse(field) {
            Some(Field::Id(id)) => put(&mut self.ids, id, marker),
            Some(Field::Sub(sub)) => put(&mut self.subs, sub, marker),
            Some(Field::Sid(sid)) => put(&mut self.sids, sid, marker),
            Some(Field::SidSub(sid, sub)) => {
                put(self.sid_subs.entry(sid).or_default(), sub, marker)
            }
            Some(Field::Sidless(sub)) => put(&mut self.sidless, sub, marker),
            None => {}
        }
    }

    /// Whether a live marker ends `session`.
    pub(crate) fn covers(&self, session: &SessionKey<'_>, now: u64) -> bool {
        let live = |marker: Option<&Marker>, auth: u64| {
            marker.is_some_and(|m| m.expires_at > now && m.iat >= auth)
        };
        let auth = session.auth_time;
        live(self.ids.get(session.session_id), 0)
            || live(self.subs.get(session.sub), auth)
            || (session.sid.is_none() && live(self.sidless.get(session.sub), auth))
            || session.sid.is_some_and(|sid| {
                live(self.sids.get(sid), auth)
                    || live(
                        self.sid_subs.get(sid).and_then(|by| by.get(session.sub)),
                        auth,
                    )
            })
    }

    /// Forget the markers that expired.
    pub(crate) fn prune(&mut self, now: u64) {
        for map in [
            &mut self.ids,
            &mut self.subs,
            &mut self.sids,
            &mut self.sidless,
        ] {
            map.retain(|_, m| m.expires_at > now);
        }
        self.sid_subs.retain(|_, by| {
            by.retain(|_, m| m.expires_at > now);
            !by.is_empty()
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
            + self.subs.len()
            + self.sids.len()
            + self.sidless.len()
            + self.sid_subs.values().map(HashMap::len).sum::<usize>()
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
            &sub_field("alice"),
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
        m.apply(&sid_sub_field("op-1", "alice"), marker, 0);
        assert!(m.covers(&session("alice", Some("op-1"), 90), 0));
        assert!(!m.covers(&session("bob", Some("op-1"), 90), 0));
        m.apply(&sid_field("op-1"), marker, 0);
        assert!(m.covers(&session("bob", Some("op-1"), 90), 0));
        assert!(!m.covers(&session("bob", Some("op-2"), 90), 0));
        assert!(!m.covers(&session("bob", None, 90), 0));
    }

    #[test]
    fn a_sidless_marker_ends_only_the_users_sessions_without_a_sid() {
        let mut m = Markers::default();
        let marker = Marker {
            iat: 100,
            expires_at: 1_000,
        };
        m.apply(&sidless_field("alice"), marker, 0);
        assert!(m.covers(&session("alice", None, 90), 0));
        assert!(!m.covers(&session("alice", Some("op-2"), 90), 0));
        assert!(!m.covers(&session("bob", None, 90), 0));
        assert!(!m.covers(&session("alice", None, 101), 0), "a later login");
    }

    #[test]
    fn an_id_marker_ends_that_session_whatever_its_login() {
        let mut m = Markers::default();
        m.apply(
            &id_field("s1"),
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
            &sub_field("a"),
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
