//! Layout version 1, kept only so that a receiver can end the sessions applications of an
//! older release registered there, while they move to version 2 (`IndexSettings::legacy_v1`,
//! `docs/redis-schema.md`, "Moving from v1"). Nothing registers in version 1 any more; reading
//! a version 1 session is part of the state script (`lua/state.lua`) (same hash tag, same script).
//!
//! These are the version 1 scripts as they were, unchanged, so that the two releases agree.

use super::connection::RedisConnection;
use super::keys::{V1Keys, decode_component, encode_component};
use super::lua::{V1Scripts, deny_field, millis};
use super::{IndexSettings, Logout, OrUnavailable as _, SessionInfo, StoreError, Target};

/// What a migrating receiver does in version 1 (`lua/v1_*.lua`).
pub(super) struct LegacyV1 {
    scripts: V1Scripts,
}

impl LegacyV1 {
    pub(super) fn new() -> Self {
        Self {
            scripts: V1Scripts::new(),
        }
    }

    /// End the version 1 sessions a logout names, with its version 1 markers and denylist
    /// marker (for API instances of the older release); no jti (version 2 keeps it).
    pub(super) async fn logout(
        &self,
        conn: &mut RedisConnection,
        settings: &IndexSettings,
        l: &Logout<'_>,
    ) -> Result<Vec<String>, StoreError> {
        let k = V1Keys::new(&settings.prefix, l.issuer);
        let (mode, index, marker, sub) = match l.target {
            Target::Sid { sid, sub: None } => ("sid", k.sid(sid), k.sid_marker(sid), ""),
            Target::Sid {
                sid,
                sub: Some(sub),
            } => ("sidsub", k.sid(sid), k.sid_marker(sid), sub),
            Target::Sub { sub } => ("sub", k.sub(sub), k.sub_marker(sub), sub),
        };
        let (deny_from, deny_secs) = l
            .deny
            .map_or((0, 0), |d| (d.issued_until, d.lifetime.as_secs().max(1)));
        let mut inv = self.scripts.logout.prepare_invoke();
        inv.key(k.session("")) // the jti key: unused without a jti, any key of the slot
            .key(index)
            .key(marker)
            .key(k.deny())
            .key(k.deny_expiry())
            .arg(mode)
            .arg(l.issued_at)
            .arg(sub)
            .arg(1)
            .arg(millis(settings.marker_ttl))
            .arg(k.session_prefix())
            .arg(k.sid_prefix())
            .arg(k.sub_prefix())
            .arg(crate::sys::unix_now())
            .arg("0")
            .arg(deny_field(l))
            .arg(deny_secs)
            .arg(format!("{}v1:deny", settings.prefix))
            .arg(encode_component(l.issuer))
            .arg(deny_from);
        let reply: Vec<String> = inv.invoke_async(conn).await.or_unavailable()?;
        match reply.split_first() {
            Some((status, members)) if status == "ok" => {
                Ok(members.iter().map(|m| decode_component(m)).collect())
            }
            _ => Err(StoreError::Unexpected(format!(
                "v1 logout script returned {reply:?}"
            ))),
        }
    }

    /// End one version 1 session by id.
    pub(super) async fn end_session(
        &self,
        conn: &mut RedisConnection,
        settings: &IndexSettings,
        issuer: &str,
        session_id: &str,
    ) -> Result<bool, StoreError> {
        let k = V1Keys::new(&settings.prefix, issuer);
        let mut inv = self.scripts.end_session.prepare_invoke();
        inv.key(k.session(session_id))
            .arg(encode_component(session_id))
            .arg(k.sid_prefix())
            .arg(k.sub_prefix())
            .arg(crate::sys::unix_now())
            .arg(millis(settings.marker_ttl));
        let ended: i64 = inv.invoke_async(conn).await.or_unavailable()?;
        Ok(ended == 1)
    }

    /// The live version 1 sessions of a user.
    pub(super) async fn sessions(
        &self,
        conn: &mut RedisConnection,
        settings: &IndexSettings,
        issuer: &str,
        sub: &str,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let k = V1Keys::new(&settings.prefix, issuer);
        let mut inv = self.scripts.sessions.prepare_invoke();
        inv.key(k.sub(sub)).arg(k.session_prefix()).arg(sub);
        let rows: Vec<(String, String, u64, u64, u64)> =
            inv.invoke_async(conn).await.or_unavailable()?;
        Ok(rows
            .into_iter()
            .map(|(member, sid, auth_time, _created, _seen)| SessionInfo {
                session_id: decode_component(&member),
                sid: (!sid.is_empty()).then_some(sid),
                auth_time,
                indexed_until: 0,
            })
            .collect())
    }
}
