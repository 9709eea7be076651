//! The one path every input other than a logout token ends in: the admin API and CLI (and the
//! webhook and Shared Signals receivers) end sessions and revoke users through a [`Revoker`].
//!
//! It does what the receiver does after a valid logout token, with the operator or event as the
//! authority instead of a signature: end the sessions in the index, write the access-token
//! denylist marker when a whole user is revoked, and hand the ended sessions to the after-logout
//! hook (refresh-token revocation). "As of now" is the logout time, so a session authenticated
//! before the call ends and one authenticated later survives.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::receiver::AfterLogout;
use crate::session_store::{Login, login_of};
use crate::store::{
    Logout, LogoutOutcome, RecordStore, SessionIndex, SessionInfo, StoreError, Target,
};

/// Why a revocation was not done.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// The issuer is not one this process is configured for.
    #[error("unknown issuer {0}")]
    UnknownIssuer(String),
    /// The index could not be read or written; nothing may be assumed done.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A live session with what its application recorded at login.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionView {
    /// The application's session id.
    pub session_id: String,
    /// The OP session, when known.
    pub sid: Option<String>,
    /// The client (application) that logged the user in, when its login names one.
    pub client_id: Option<String>,
    /// When the user authenticated at the OP (seconds since the epoch).
    pub auth_time: u64,
    /// When the session was created (seconds since the epoch; 0 when unknown).
    pub created: u64,
    /// When its application last saved it (seconds since the epoch; 0 when unknown).
    pub last_seen: u64,
}

/// Ends sessions and revokes users of the configured issuers.
pub struct Revoker<S> {
    index: S,
    /// Per issuer: how long its access tokens live (the denylist marker's lifetime), if markers
    /// are written at all.
    issuers: HashMap<String, Option<Duration>>,
    after: Option<Arc<dyn AfterLogout>>,
}

impl<S> std::fmt::Debug for Revoker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revoker")
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl<S: SessionIndex + RecordStore> Revoker<S> {
    /// A revoker over `index` for no issuer yet.
    pub fn new(index: S) -> Self {
        Self {
            index,
            issuers: HashMap::new(),
            after: None,
        }
    }

    /// Accept `issuer`; revoking one of its users writes a denylist marker lasting
    /// `access_token_lifetime` (none when `None`).
    #[must_use]
    pub fn with_issuer(
        mut self,
        issuer: impl Into<String>,
        access_token_lifetime: Option<Duration>,
    ) -> Self {
        self.issuers.insert(issuer.into(), access_token_lifetime);
        self
    }

    /// The index it ends sessions in (the other inputs also remember event ids there).
    pub fn index(&self) -> &S {
        &self.index
    }

    /// Run `hook` (refresh-token revocation) with the sessions each call ends.
    #[must_use]
    pub fn with_after_logout(mut self, hook: Arc<dyn AfterLogout>) -> Self {
        self.after = Some(hook);
        self
    }

    fn lifetime(&self, issuer: &str) -> Result<Option<Duration>, RevokeError> {
        self.issuers
            .get(issuer)
            .copied()
            .ok_or_else(|| RevokeError::UnknownIssuer(issuer.to_owned()))
    }

    fn ended(&self, issuer: &str, ids: &[String]) {
        if let Some(hook) = &self.after
            && !ids.is_empty()
        {
            hook.sessions_ended(issuer, ids);
        }
    }

    /// The live sessions of a user, with the client and login time their records hold.
    pub async fn sessions(&self, issuer: &str, sub: &str) -> Result<Vec<SessionView>, RevokeError> {
        self.lifetime(issuer)?;
        let infos = self.index.sessions(issuer, sub).await?;
        let ids: Vec<String> = infos.iter().map(|i| i.session_id.clone()).collect();
        let records = self.index.get_records(&ids).await?;
        Ok(infos
            .into_iter()
            .zip(records)
            .map(|(info, record)| view(info, record.as_deref().and_then(login)))
            .collect())
    }

    /// End one session by its id. Returns whether a live session was ended.
    pub async fn end_session(&self, issuer: &str, session_id: &str) -> Result<bool, RevokeError> {
        self.lifetime(issuer)?;
        let ended = self.index.end_session(issuer, session_id).await?;
        if ended {
            self.ended(issuer, &[session_id.to_owned()]);
        }
        Ok(ended)
    }

    /// End the sessions of a user whose client is one of `clients` (the login's `client_id`);
    /// returns their ids.
    pub async fn end_client_sessions(
        &self,
        issuer: &str,
        sub: &str,
        clients: &[String],
    ) -> Result<Vec<String>, RevokeError> {
        let mut ended = Vec::new();
        for session in self.sessions(issuer, sub).await? {
            let wanted = session
                .client_id
                .as_ref()
                .is_some_and(|c| clients.contains(c));
            if wanted && self.index.end_session(issuer, &session.session_id).await? {
                ended.push(session.session_id);
            }
        }
        self.ended(issuer, &ended);
        Ok(ended)
    }

    /// End every session of a user authenticated until now, without a denylist marker (the
    /// user may keep using access tokens already issued): "log out everywhere".
    pub async fn end_all_sessions(
        &self,
        issuer: &str,
        sub: &str,
    ) -> Result<Vec<String>, RevokeError> {
        self.logout(issuer, Target::Sub { sub }, false).await
    }

    /// Revoke a user: end every session authenticated until now, refuse registrations of
    /// sessions authenticated before now, write the access-token denylist marker, and revoke
    /// the refresh tokens the sessions hold.
    pub async fn revoke_user(&self, issuer: &str, sub: &str) -> Result<Vec<String>, RevokeError> {
        self.logout(issuer, Target::Sub { sub }, true).await
    }

    /// End the sessions of one OP session (a CAEP `session-revoked` naming it), with its
    /// denylist marker.
    pub async fn revoke_op_session(
        &self,
        issuer: &str,
        sid: &str,
    ) -> Result<Vec<String>, RevokeError> {
        self.logout(issuer, Target::Sid { sid, sub: None }, true)
            .await
    }

    async fn logout(
        &self,
        issuer: &str,
        target: Target<'_>,
        with_marker: bool,
    ) -> Result<Vec<String>, RevokeError> {
        let lifetime = self.lifetime(issuer)?;
        let deny_for = if with_marker { lifetime } else { None };
        let logout = Logout {
            issuer,
            target,
            issued_at: unix_now(),
            jti: None,
            deny_for,
        };
        match self.index.logout(&logout).await? {
            LogoutOutcome::Applied { ended } => {
                self.ended(issuer, &ended);
                Ok(ended)
            }
            // Only a logout with a jti can be a replay.
            LogoutOutcome::Replayed => Ok(Vec::new()),
        }
    }
}

fn login(data: &[u8]) -> Option<Login> {
    let record = serde_json::from_slice(data).ok()?;
    login_of(&record).ok().flatten()
}

fn view(info: SessionInfo, login: Option<Login>) -> SessionView {
    SessionView {
        session_id: info.session_id,
        sid: info.sid,
        client_id: login.and_then(|l| l.client_id),
        auth_time: info.auth_time,
        created: info.created,
        last_seen: info.seen,
    }
}
