//! Logout-aware tower-sessions stores: the application's sessions end when a logout says so.
//!
//! [`LogoutAware`] wraps the store an application already has (tower-sessions' `MemoryStore`,
//! `tower-sessions-redis-store`, an sqlx store, ...) and keeps its data format. After its OIDC
//! callback the application records who logged in with [`Login::save_to`]. From then on the
//! wrapper keeps the session registered in the [index](crate::index) under (issuer, sid) and
//! (issuer, sub) — through id rotation too — so the back-channel receiver can end it, and it
//! refuses to hand out a session a logout ended. [`OidcSessionStore`] is the same wrapper over
//! this crate's own record store ([`Records`]), for applications that start from nothing.
//!
//! What it costs: loading a logged-in session asks the index nothing while the instance's
//! in-memory view of logouts is current (see [`SessionIndex::known_state`](crate::index::SessionIndex::known_state)), and one Redis round
//! trip otherwise; saving a session whose login did not change runs no index script. The
//! session is registered at login and id rotation, and its index entry is extended only when the
//! session would outlive it (about every quarter of its lifetime, at most hourly).
//!
//! A [`SessionPolicy`], chosen per login by [`Policies`] (by issuer, client or claims) and
//! recorded with the session, caps its life: an idle timeout (from the last save) and an
//! absolute lifetime (from the login), whatever the application's cookie expiry says. Its
//! revalidation and authentication-age limits are checked per request by the relying party's
//! middleware ([`rp::RelyingParty::revalidation`](crate::rp::RelyingParty::revalidation)).
//!
//! Sessions without a [`Login`] (anonymous ones, or those the application created before it
//! adopted this crate) pass through untouched: no logout can reach them, since nothing says whose
//! they are, and they keep working until they expire or their user logs in again.

// Without a tower-sessions version (a build for the server or the receiver alone) the store's
// rules have no `SessionStore` to serve: they are compiled, unused.
#![cfg_attr(
    not(any(feature = "tower-sessions-014", feature = "tower-sessions-015")),
    allow(dead_code, unused_imports, unused_macros, unused_variables)
)]

/// Implement a tower-sessions trait for each tower-sessions version this build supports: 0.15
/// always, 0.14 with the feature `tower-sessions-014` (its `SessionStore` trait and `Record` are
/// the same shape, so one body serves both).
macro_rules! for_each_tower_sessions {
    ($implement:ident) => {
        #[cfg(feature = "tower-sessions-015")]
        $implement!(tower_sessions_core);
        #[cfg(feature = "tower-sessions-014")]
        $implement!(tower_sessions_core_014);
    };
}

mod aware;
mod details;
mod extract;
mod middleware;
mod own;
mod policy;
mod records;
mod seal;

use std::borrow::Cow;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::net::NotANetwork;
#[doc(hidden)]
pub use aware::INDEXED_KEY;
pub use aware::LogoutAware;
#[doc(hidden)]
pub use details::DETAILS_KEY;
pub use details::SessionDetails;
#[cfg(feature = "openidconnect")]
pub(crate) use extract::plain;
pub use extract::{LoggedIn, LoggedInPage, LoginPage, LoginRejection};
#[cfg(feature = "openidconnect")]
pub(crate) use middleware::Sealed;
// The plumbing of the per-request layers (`SessionDetails::layer`, `Revalidation::layer`).
#[doc(hidden)]
pub use middleware::{PerRequest, SessionLayer, SessionService};
pub use own::OwnSessions;
#[doc(hidden)]
pub use policy::Chooser;
pub use policy::{
    Policies, PoliciesConfig, PolicyConfig, PolicyError, PolicyInput, PolicyRule, SessionPolicy,
    Unreachable,
};
pub use records::Records;
#[cfg(feature = "rp")]
pub(crate) use seal::open_refresh_token;
pub use seal::{TokenKeyError, TokenKeys};

/// The tower-sessions store of this crate: [`LogoutAware`] over [`Records`] in the same backend
/// as the index ([`RedisIndex`](crate::index::RedisIndex) or
/// [`MemoryIndex`](crate::index::MemoryIndex)). The receiver reads its records to revoke the
/// refresh tokens of the sessions a logout ends.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use oidc_logout::session_store::{OidcSessionStore, TokenKeys};
/// use oidc_logout::RedisIndex;
/// use oidc_logout::index::IndexSettings;
/// use tower_sessions::SessionManagerLayer;
///
/// // Records and index in the same Redis; the tokens in the records sealed.
/// let index = RedisIndex::connect("redis://127.0.0.1/", IndexSettings::default()).await?;
/// let keys = TokenKeys::parse(&std::env::var("APP_TOKEN_KEYS")?)?;
/// let store = OidcSessionStore::new(index).with_token_keys(keys);
/// let app: axum::Router = axum::Router::new().layer(SessionManagerLayer::new(store));
/// # Ok(()) }
/// ```
pub type OidcSessionStore<B> = LogoutAware<Records<B>, B>;

/// The session data key under which the [`Login`] is kept (docs/redis-schema.md documents the
/// record; applications read the login through [`Login::from_session`] or the extractors).
#[doc(hidden)]
pub const LOGIN_KEY: &str = "oidc_logout.login";

/// The session data key of what a request's policy check reads: small, so that checking a
/// session that needs nothing costs little.
#[doc(hidden)]
pub const CHECK_KEY: &str = "oidc_logout.check";

/// What a request's policy check needs of the login, and when the OP last confirmed the user's
/// access (seconds since the epoch).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CheckFacts<'a> {
    #[serde(borrow, rename = "iss")]
    pub(crate) issuer: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) sub: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy: Option<Cow<'a, str>>,
    #[serde(rename = "auth")]
    pub(crate) auth_time: u64,
    #[serde(rename = "at")]
    pub(crate) checked_at: u64,
}

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
    /// The name of the [`SessionPolicy`] chosen for this login ([`Policies::choose`]); `None`
    /// for the issuer's or the default policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The customer this login belongs to, decided by the same rules
    /// ([`Policies::customer_for`]): senders scoped to a customer reach only its users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
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
    pub async fn save_to(&self, session: &impl SessionAccess) -> Result<(), SessionError> {
        session.cycle_id().await?;
        self.write_to(session, 0).await
    }

    /// Replace the login recorded in `session` with new tokens of the same login (after a
    /// refresh), without rotating its id. Refused when the session holds no login, or one of
    /// another issuer, user, OP session or authentication: that is a new login, which
    /// [`save_to`](Self::save_to) records (rotating the id against session fixation, and
    /// registering it in the index afresh).
    ///
    /// Each update is a new generation of the login's tokens: a request that loaded the session
    /// before it and saves after it keeps the newer tokens (the store's save compares
    /// generations), so a rotated refresh token is never written back over its successor.
    pub async fn update_in(&self, session: &impl SessionAccess) -> Result<(), SessionError> {
        let old = session.get_value(LOGIN_KEY).await?;
        let same = old
            .as_ref()
            .and_then(|value| Self::deserialize(value).ok())
            .is_some_and(|old| {
                (&old.issuer, &old.sub, &old.sid, old.auth_time)
                    == (&self.issuer, &self.sub, &self.sid, self.auth_time)
            });
        if !same {
            return Err(SessionError(
                "update_in keeps the same login; record a new login with save_to".into(),
            ));
        }
        let generation = old.as_ref().map_or(0, generation_of_login);
        self.write_to(session, generation.saturating_add(1)).await
    }

    /// Write the login, and beside it the little a request's policy check reads
    /// ([`CHECK_KEY`]): the OP confirmed the user's access now (at login, or with the new
    /// tokens of a refresh).
    async fn write_to(
        &self,
        session: &impl SessionAccess,
        generation: u64,
    ) -> Result<(), SessionError> {
        let mut value = serde_json::to_value(self).map_err(|e| SessionError(e.to_string()))?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert(GENERATION.to_owned(), generation.into());
        }
        let check = CheckFacts {
            issuer: Cow::Borrowed(&self.issuer),
            sub: Cow::Borrowed(&self.sub),
            policy: self.policy.as_deref().map(Cow::Borrowed),
            auth_time: self.auth_time,
            checked_at: crate::sys::unix_now(),
        };
        let check = serde_json::to_value(check).map_err(|e| SessionError(e.to_string()))?;
        session.insert_value(LOGIN_KEY, value).await?;
        session.insert_value(CHECK_KEY, check).await
    }

    /// The login recorded in `session`, if any.
    pub async fn from_session(session: &impl SessionAccess) -> Result<Option<Self>, SessionError> {
        session
            .get_value(LOGIN_KEY)
            .await?
            .map(|value| Self::deserialize(value).map_err(|e| SessionError(e.to_string())))
            .transpose()
    }
}

/// The field of a recorded login that counts its token updates ([`Login::update_in`]): a save
/// never replaces a login with an older generation of itself (docs/redis-schema.md, the `d:`
/// keys).
pub(crate) const GENERATION: &str = "generation";

/// The generation of a recorded login (a [`Login`] as JSON); 0 when it has none.
pub(crate) fn generation_of_login(login: &serde_json::Value) -> u64 {
    login
        .get(GENERATION)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// A request's session could not be read or written (the store failed, or its data does not
/// decode); the message says which.
#[derive(Debug, Clone, thiserror::Error)]
#[error("session: {0}")]
pub struct SessionError(String);

mod sealed {
    pub trait Sealed {}
}

/// A request's tower-sessions `Session`, of any version this build supports (0.15; 0.14 with
/// the feature `tower-sessions-014`): what [`Login`] and the logout button need of it.
pub trait SessionAccess: sealed::Sealed + Send + Sync {
    /// Give the session a new id, keeping its data.
    fn cycle_id(&self) -> impl Future<Output = Result<(), SessionError>> + Send;
    /// The value under `key`.
    fn get_value(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, SessionError>> + Send;
    /// Set the value under `key`.
    fn insert_value(
        &self,
        key: &str,
        value: serde_json::Value,
    ) -> impl Future<Output = Result<(), SessionError>> + Send;
    /// Remove the value under `key`, returning it.
    fn remove_value(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, SessionError>> + Send;
    /// Delete the session from its store and start an empty one.
    fn flush(&self) -> impl Future<Output = Result<(), SessionError>> + Send;
    /// Write the session to its store now, rather than at the end of the request.
    fn save(&self) -> impl Future<Output = Result<(), SessionError>> + Send;
    /// The session's id, once it has one (after its first save).
    fn id(&self) -> Option<String>;
}

macro_rules! implement_access {
    ($ts:ident) => {
        impl sealed::Sealed for $ts::Session {}

        impl SessionAccess for $ts::Session {
            async fn cycle_id(&self) -> Result<(), SessionError> {
                $ts::Session::cycle_id(self)
                    .await
                    .map_err(|e| SessionError(e.to_string()))
            }
            async fn get_value(
                &self,
                key: &str,
            ) -> Result<Option<serde_json::Value>, SessionError> {
                $ts::Session::get_value(self, key)
                    .await
                    .map_err(|e| SessionError(e.to_string()))
            }
            async fn insert_value(
                &self,
                key: &str,
                value: serde_json::Value,
            ) -> Result<(), SessionError> {
                $ts::Session::insert_value(self, key, value)
                    .await
                    .map(|_| ())
                    .map_err(|e| SessionError(e.to_string()))
            }
            async fn remove_value(
                &self,
                key: &str,
            ) -> Result<Option<serde_json::Value>, SessionError> {
                $ts::Session::remove_value(self, key)
                    .await
                    .map_err(|e| SessionError(e.to_string()))
            }
            async fn flush(&self) -> Result<(), SessionError> {
                $ts::Session::flush(self)
                    .await
                    .map_err(|e| SessionError(e.to_string()))
            }
            async fn save(&self) -> Result<(), SessionError> {
                $ts::Session::save(self)
                    .await
                    .map_err(|e| SessionError(e.to_string()))
            }
            fn id(&self) -> Option<String> {
                $ts::Session::id(self).map(|id| id.to_string())
            }
        }
    };
}

for_each_tower_sessions!(implement_access);

/// What the wrapper needs of a stored login, read without copying the rest (tokens and all).
#[derive(Deserialize)]
pub(crate) struct LoginFacts<'a> {
    #[serde(borrow)]
    pub(crate) issuer: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) sub: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) sid: Option<Cow<'a, str>>,
    pub(crate) auth_time: u64,
    pub(crate) logged_in_at: u64,
    #[serde(borrow, default)]
    pub(crate) policy: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) customer: Option<Cow<'a, str>>,
}

/// The login a stored session record (this crate's JSON) holds, if it can be read.
#[cfg(feature = "rp")]
pub(crate) fn login_of_bytes(data: &[u8]) -> Option<Login> {
    recorded_of_bytes(data).map(|(login, _)| login)
}

/// What a session record's user and use are, for the admin's and the user's session lists.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorded {
    pub(crate) client_id: Option<String>,
    pub(crate) policy: Option<String>,
    pub(crate) customer: Option<String>,
    pub(crate) logged_in_at: Option<u64>,
    pub(crate) last_seen: Option<u64>,
    pub(crate) user_agent: Option<String>,
    pub(crate) address: Option<String>,
}

/// The login and details a stored session record (this crate's JSON) holds.
pub(crate) fn recorded_of_bytes(data: &[u8]) -> Option<(Login, Recorded)> {
    /// The part of a stored tower-sessions record (the same JSON in 0.14 and 0.15) read here.
    #[derive(Deserialize)]
    struct Record {
        data: std::collections::HashMap<String, serde_json::Value>,
    }
    let record: Record = serde_json::from_slice(data).ok()?;
    let login = record
        .data
        .get(LOGIN_KEY)
        .and_then(|value| Login::deserialize(value).ok())?;
    let details = details::details_of(&record.data).unwrap_or_default();
    let recorded = Recorded {
        client_id: login.client_id.clone(),
        policy: login.policy.clone(),
        customer: login.customer.clone(),
        logged_in_at: Some(login.logged_in_at),
        last_seen: (details.last_seen > 0).then_some(details.last_seen),
        user_agent: details.user_agent,
        address: details.address,
    };
    Some((login, recorded))
}
