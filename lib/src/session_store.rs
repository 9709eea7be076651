//! The tower-sessions store that keeps the logout index as applications log users in.
//!
//! An application uses [`OidcSessionStore`] as its tower-sessions store and, after its OIDC
//! callback, records who logged in with [`Login::save_to`]. From then on the store keeps the
//! session registered in the [index](crate::index) under (issuer, sid) and (issuer, sub) — through
//! id rotation too — so the back-channel receiver can end it, and it refuses to hand out a session
//! the index says was ended. All other session data is the application's and stays untouched.
//!
//! Per-issuer [`SessionPolicy`] caps a session's life: an idle timeout (from the last save) and an
//! absolute lifetime (from the login), whatever the application's cookie expiry says.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use tower_sessions_core::Session;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, SessionStore};

use crate::index::{
    RecordStore, Registration, SessionIndex, SessionRecord, SessionState, StoreError,
};
use crate::sys::unix_now;

/// The session data key under which the [`Login`] is kept.
pub const LOGIN_KEY: &str = "oidc_logout.login";

/// A token kept in the session (ID, refresh or access token). Stored as is, never printed.
#[derive(Clone)]
pub struct TokenSecret(SecretString);

impl TokenSecret {
    /// Wrap a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(SecretString::from(token.into()))
    }

    /// The token itself, to send it to the OP.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for TokenSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for TokenSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// Who is logged in to a session: what the application learned from the verified ID token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Login {
    /// The ID token's `iss`.
    pub issuer: String,
    /// The ID token's `sub`.
    pub sub: String,
    /// The client id that obtained the tokens (to authenticate their revocation), when the
    /// application has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The ID token's `sid`, when the OP sends one.
    pub sid: Option<String>,
    /// The ID token's `auth_time` (or its `iat`), seconds since the epoch.
    pub auth_time: u64,
    /// When the application established the session, seconds since the epoch; the absolute
    /// lifetime counts from here.
    pub logged_in_at: u64,
    /// The raw ID token, for `id_token_hint` at logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<TokenSecret>,
    /// The refresh token, revoked at logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<TokenSecret>,
    /// The access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<TokenSecret>,
}

impl Login {
    /// Record this login in `session`, after rotating its id (against session fixation). The
    /// store registers it in the index when the session is saved at the end of the request.
    pub async fn save_to(
        &self,
        session: &Session,
    ) -> Result<(), tower_sessions_core::session::Error> {
        session.cycle_id().await?;
        session.insert(LOGIN_KEY, self).await
    }

    /// The login recorded in `session`, if any.
    pub async fn from_session(
        session: &Session,
    ) -> Result<Option<Self>, tower_sessions_core::session::Error> {
        session.get(LOGIN_KEY).await
    }
}

/// Limits on how long sessions of one issuer live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionPolicy {
    /// End a session not saved for this long.
    pub idle_timeout: Option<Duration>,
    /// End a session this long after the login, however active.
    pub absolute_lifetime: Option<Duration>,
}

impl SessionPolicy {
    /// End a session not saved for `idle` (the default: no idle limit).
    #[must_use]
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// End a session `lifetime` after the login, however active (the default: no limit).
    #[must_use]
    pub fn with_absolute_lifetime(mut self, lifetime: Duration) -> Self {
        self.absolute_lifetime = Some(lifetime);
        self
    }
}

/// A tower-sessions store over a shared backend ([`RedisIndex`](crate::index::RedisIndex) or
/// [`MemoryIndex`](crate::index::MemoryIndex)) that keeps the logout index in step.
#[derive(Clone, Debug)]
pub struct OidcSessionStore<B> {
    backend: B,
    default_policy: SessionPolicy,
    policies: Arc<HashMap<String, SessionPolicy>>,
}

fn backend_error(error: StoreError) -> session_store::Error {
    session_store::Error::Backend(error.to_string())
}

/// The login a stored session record (tower-sessions' JSON) holds, if it can be read.
pub(crate) fn login_of_bytes(data: &[u8]) -> Option<Login> {
    let record = serde_json::from_slice(data).ok()?;
    login_of(&record).ok().flatten()
}

pub(crate) fn login_of(record: &Record) -> Result<Option<Login>, session_store::Error> {
    record
        .data
        .get(LOGIN_KEY)
        .map(|value| serde_json::from_value(value.clone()))
        .transpose()
        .map_err(|e| session_store::Error::Decode(format!("{LOGIN_KEY}: {e}")))
}

impl<B: SessionIndex + RecordStore + std::fmt::Debug> OidcSessionStore<B> {
    /// A store on `backend` with no lifetime limits beyond the application's cookie expiry.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            default_policy: SessionPolicy::default(),
            policies: Arc::default(),
        }
    }

    /// Limits for issuers without a policy of their own.
    #[must_use]
    pub fn with_default_policy(mut self, policy: SessionPolicy) -> Self {
        self.default_policy = policy;
        self
    }

    /// Limits for the sessions of one issuer.
    #[must_use]
    pub fn with_policy(mut self, issuer: impl Into<String>, policy: SessionPolicy) -> Self {
        Arc::make_mut(&mut self.policies).insert(issuer.into(), policy);
        self
    }

    /// The backend, to share it with a receiver.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// How long `record` may still live, or `None` when it must not be kept.
    fn remaining(&self, record: &Record, login: Option<&Login>) -> Option<Duration> {
        let now = OffsetDateTime::now_utc();
        let mut ttl = Duration::try_from(record.expiry_date - now).ok()?;
        if let Some(login) = login {
            let policy = self
                .policies
                .get(&login.issuer)
                .unwrap_or(&self.default_policy);
            if let Some(idle) = policy.idle_timeout {
                ttl = ttl.min(idle);
            }
            if let Some(absolute) = policy.absolute_lifetime {
                let ends = login.logged_in_at.saturating_add(absolute.as_secs());
                ttl = ttl.min(Duration::from_secs(ends.checked_sub(unix_now())?));
            }
        }
        (!ttl.is_zero()).then_some(ttl)
    }

    /// Register the session in the index; `false` when a logout already covers it.
    async fn index(
        &self,
        id: &str,
        login: &Login,
        ttl: Duration,
    ) -> Result<bool, session_store::Error> {
        let record = SessionRecord {
            session_id: id.to_owned(),
            issuer: login.issuer.clone(),
            sub: login.sub.clone(),
            sid: login.sid.clone(),
            auth_time: login.auth_time,
            ttl,
        };
        let registration = self
            .backend
            .register(&record)
            .await
            .map_err(backend_error)?;
        Ok(registration == Registration::Registered)
    }

    async fn write(&self, record: &Record, create: bool) -> Result<bool, session_store::Error> {
        let id = record.id.to_string();
        let login = login_of(record)?;
        let Some(ttl) = self.remaining(record, login.as_ref()) else {
            // Expired by policy: drop it, and end its index entry.
            self.delete(&record.id).await?;
            return Ok(true);
        };
        let data =
            serde_json::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        if create
            && !self
                .backend
                .create_record(&id, &data, ttl)
                .await
                .map_err(backend_error)?
        {
            return Ok(false);
        }
        if let Some(login) = &login
            && !self.index(&id, login, ttl).await?
        {
            // A logout got there first: the session must not come back. A record already
            // written (by create) is left to expire, so that refresh-token revocation can still
            // read its tokens; load never returns it.
            return Ok(true);
        }
        if !create {
            self.backend
                .put_record(&id, &data, ttl)
                .await
                .map_err(backend_error)?;
        }
        Ok(true)
    }
}

#[async_trait]
impl<B: SessionIndex + RecordStore + std::fmt::Debug> SessionStore for OidcSessionStore<B> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // Never overwrite an existing session: on an id collision, draw another id.
        while !self.write(record, true).await? {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.write(record, false).await.map(|_| ())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let key = id.to_string();
        let Some(data) = self.backend.get_record(&key).await.map_err(backend_error)? else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(&data)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        if record.expiry_date <= OffsetDateTime::now_utc() {
            return Ok(None);
        }
        if let Some(login) = login_of(&record)? {
            let state = self
                .backend
                .state(&login.issuer, &key)
                .await
                .map_err(backend_error)?;
            if state != SessionState::Active {
                // Left in place until it expires: the receiver's refresh-token revocation may
                // still need to read it, and removes it when done.
                return Ok(None);
            }
        }
        Ok(Some(record))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let key = id.to_string();
        if let Some(data) = self.backend.get_record(&key).await.map_err(backend_error)?
            && let Ok(record) = serde_json::from_slice::<Record>(&data)
            && let Some(login) = login_of(&record)?
        {
            self.backend
                .end_session(&login.issuer, &key)
                .await
                .map_err(backend_error)?;
        }
        self.backend
            .delete_record(&key)
            .await
            .map_err(backend_error)
    }
}
