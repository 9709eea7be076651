//! The rules that make any tower-sessions store logout-aware, in one place: [`LogoutAware`]
//! decides on load, save and delete over plain values, and the trait implementations for each
//! supported tower-sessions version only translate.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::records::{holds_refresh_token, keep_newer_login, login_generation};
use super::seal::{TokenKeys, open_login};
use super::{LOGIN_KEY, LoginFacts, Policies, SessionPolicy};
use crate::core::{Action, Core, CoreError, Event, Scope, Sender};
use crate::index::{
    RecordStore, Registration, SessionIndex, SessionKey, SessionRecord, SessionState, StoreError,
};
use crate::sys::unix_now;

/// The session data key under which the wrapper records what the index knows of the session.
pub const INDEXED_KEY: &str = "oidc_logout.indexed";

/// An index entry lives this much longer than the session it registers, so that active
/// sessions re-register rarely: a quarter of the session's remaining lifetime, at least a
/// second (entries expire in whole seconds) and at most an hour.
fn slack(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// What the index knows of a session, as recorded in it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Indexed<'a> {
    /// The session id the entry is for (an id rotation makes it stale).
    #[serde(borrow)]
    id: Cow<'a, str>,
    /// A fingerprint of the login registered (a changed login makes it stale).
    #[serde(borrow)]
    login: Cow<'a, str>,
    /// Until when the index keeps the entry, seconds since the epoch.
    until: u64,
}

/// FNV-1a over the parts of a login the index keys on: cheap, stable across builds, and only
/// ever compared with what this same session recorded (the data is the server's, not the
/// client's, so nobody picks it).
fn fingerprint(login: &LoginFacts<'_>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let auth = login.auth_time.to_string();
    for part in [
        login.issuer.as_ref(),
        login.sub.as_ref(),
        login.sid.as_deref().unwrap_or("\u{0}none"),
        auth.as_str(),
    ] {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// A tower-sessions store wrapper that ends sessions when a logout says so. `S` is the
/// application's store, `I` the index ([`RedisIndex`](crate::index::RedisIndex) shared with the
/// receiver, or [`MemoryIndex`](crate::index::MemoryIndex) for one process).
///
/// [`LogoutAware`] sits between tower-sessions and the application's store. For a session whose
/// data holds a [`Login`](super::Login) it
///
/// - **on load** refuses the session when its lifetime is over under its issuer's policy, or a
///   logout ended it: asked of the instance's in-memory view of logouts when that is current,
///   of the index (one round trip) otherwise — and when the index cannot answer, the load fails
///   (closed) rather than serve a session that may have been ended;
/// - **on save** caps the record's expiry by the policy, refuses to write back a session the view
///   knows was ended, and registers the session in the index only when it is new to it (a login,
///   an id rotation, a changed login) or would outlive its index entry; a registration a logout
///   already covers (a callback in flight during the logout) is not written at all;
/// - **on delete** ends the session in the index (a marker for its id keeps it ended everywhere,
///   so a request in flight cannot bring it back), then deletes it from the store.
///
/// What the index knows is recorded in the session itself, under [`INDEXED_KEY`]: for which id,
/// which login and until when the session is registered. That is what lets a save skip the index.
/// Each rule is written once, over plain values; the trait implementations for each supported
/// tower-sessions version only translate.
///
/// ```
/// use oidc_logout::session_store::{LogoutAware, SessionPolicy};
/// use oidc_logout::MemoryIndex;
/// use std::time::Duration;
/// use tower_sessions::{MemoryStore, SessionManagerLayer};
///
/// // Your store, kept as it is; the index shared with the receiver (Redis in production).
/// let store = LogoutAware::wrap(MemoryStore::default(), MemoryIndex::default())
///     .with_default_policy(SessionPolicy::default().with_idle_timeout(Duration::from_secs(1800)));
/// let sessions = SessionManagerLayer::new(store);
/// let app: axum::Router = axum::Router::new().layer(sessions);
/// ```
#[derive(Clone, Debug)]
pub struct LogoutAware<S, I> {
    inner: S,
    core: Core<I>,
    policies: Arc<Policies>,
    keys: Option<TokenKeys>,
    /// Whether the inner store itself keeps a login's newer generation on save ([`Records`](super::Records)
    /// does, atomically); otherwise the wrapper compares with the stored record before saving.
    store_keeps_generations: bool,
}

impl<S, I: SessionIndex> LogoutAware<S, I> {
    /// Make `inner` logout-aware with `index`. Limits: none beyond the application's own expiry
    /// until a policy is set. The application's own logouts (a deleted session) end the session
    /// in the index through a [`Core`] of its own; give it the application's with
    /// [`with_core`](Self::with_core) to run its after-logout hooks too.
    pub fn wrap(inner: S, index: I) -> Self {
        Self {
            inner,
            core: Core::builder(index).build(),
            policies: Arc::default(),
            keys: None,
            store_keeps_generations: false,
        }
    }

    /// Seal the tokens of every login before it reaches the store, and open them on load
    /// ([`TokenKeys`]: the first key seals, every key opens). Without keys the tokens are stored
    /// as the application gave them; with keys, tokens stored in the clear before are still read,
    /// and sealed at their session's next save. Give the receiver's
    /// [`RefreshTokenRevocation`](crate::rp::RefreshTokenRevocation) the same keys.
    #[must_use]
    pub fn with_token_keys(mut self, keys: TokenKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// End sessions through `core` (over the same index): its after-logout hooks run for the
    /// application's own logouts too.
    #[must_use]
    pub fn with_core(mut self, core: Core<I>) -> Self {
        self.core = core;
        self
    }

    /// Limits for sessions no other policy applies to.
    #[must_use]
    pub fn with_default_policy(mut self, policy: SessionPolicy) -> Self {
        let policies = Arc::make_mut(&mut self.policies);
        *policies = std::mem::take(policies).with_default(policy);
        self
    }

    /// Limits for the sessions of one issuer (that recorded no policy of their own).
    #[must_use]
    pub fn with_policy(mut self, issuer: impl Into<String>, policy: SessionPolicy) -> Self {
        let policies = Arc::make_mut(&mut self.policies);
        *policies = std::mem::take(policies).with_issuer_policy(issuer, policy);
        self
    }

    /// Every policy, by the name each session's login recorded (see [`Policies`]): give the
    /// store the same set the login chose from.
    #[must_use]
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.policies = Arc::new(policies);
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S, I: SessionIndex> LogoutAware<S, I> {
    /// The index, to share it with a receiver.
    pub fn index(&self) -> &I {
        self.core.index()
    }

    /// The core the application's own logouts go through.
    pub fn core(&self) -> &Core<I> {
        &self.core
    }
}

impl<B: SessionIndex> LogoutAware<super::Records<B>, B> {
    /// This crate's store on `backend`, which holds both the records and the index.
    pub fn new(backend: B) -> Self {
        let mut store = Self::wrap(super::Records::new(backend.clone()), backend);
        store.store_keeps_generations = true;
        store
    }

    /// The backend, to share it with a receiver.
    pub fn backend(&self) -> &B {
        self.core.index()
    }
}

/// Why a rule could not be applied; each tower-sessions version maps it to its error type.
#[derive(Debug)]
pub(super) enum RuleError {
    Index(StoreError),
    Decode(String),
    Seal(String),
}

impl From<StoreError> for RuleError {
    fn from(error: StoreError) -> Self {
        Self::Index(error)
    }
}

/// What to do with a record about to be written.
#[derive(Debug)]
pub(super) enum Write {
    /// Write it as it is.
    AsIs,
    /// Write it with this expiry and, if given, this [`INDEXED_KEY`] value.
    Patched {
        expiry: OffsetDateTime,
        indexed: Option<Value>,
    },
    /// Do not write it: a logout ended it.
    Ended,
    /// Its lifetime under the policy is over: end it and delete it.
    Expired,
}

/// The login of a record, if it has one; an unreadable login is an error.
fn login_in(data: &HashMap<String, Value>) -> Result<Option<LoginFacts<'_>>, RuleError> {
    data.get(LOGIN_KEY)
        .map(LoginFacts::deserialize)
        .transpose()
        .map_err(|e| RuleError::Decode(format!("{LOGIN_KEY}: {e}")))
}

fn indexed_in(data: &HashMap<String, Value>) -> Option<Indexed<'_>> {
    data.get(INDEXED_KEY)
        .and_then(|value| Indexed::deserialize(value).ok())
}

fn key<'a>(id: &'a str, login: &'a LoginFacts<'a>) -> SessionKey<'a> {
    SessionKey {
        issuer: &login.issuer,
        session_id: id,
        sub: &login.sub,
        sid: login.sid.as_deref(),
        auth_time: login.auth_time,
    }
}

fn unix(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp()).unwrap_or(0)
}

impl<S, I: SessionIndex> LogoutAware<S, I> {
    /// How long a record expiring at `expiry` with `login` may still live; `None` when over.
    fn remaining(&self, expiry: OffsetDateTime, login: &LoginFacts<'_>) -> Option<Duration> {
        let mut ttl = Duration::try_from(expiry - OffsetDateTime::now_utc()).ok()?;
        let policy = self.policies.get(login.policy.as_deref(), &login.issuer);
        if let Some(idle) = policy.idle_timeout {
            ttl = ttl.min(idle);
        }
        if let Some(absolute) = policy.absolute_lifetime {
            let ends = login.logged_in_at.saturating_add(absolute.as_secs());
            ttl = ttl.min(Duration::from_secs(ends.checked_sub(unix_now())?));
        }
        (!ttl.is_zero()).then_some(ttl)
    }

    /// Whether a loaded record may be handed out.
    pub(super) async fn may_load(
        &self,
        id: &str,
        data: &HashMap<String, Value>,
        expiry: OffsetDateTime,
    ) -> Result<bool, RuleError> {
        if expiry <= OffsetDateTime::now_utc() {
            return Ok(false);
        }
        let login = match login_in(data) {
            Ok(Some(login)) => login,
            Ok(None) => return Ok(true),
            Err(RuleError::Decode(why)) => {
                tracing::warn!(%why, "a session's login cannot be read; treating it as logged out");
                return Ok(false);
            }
            Err(error) => return Err(error),
        };
        if self.remaining(expiry, &login).is_none() {
            return Ok(false);
        }
        let session = key(id, &login);
        let registered = indexed_in(data).is_some_and(|i| i.id == id && i.until > unix_now());
        let state = match registered
            .then(|| self.core.index().known_state(&session))
            .flatten()
        {
            Some(state) => state,
            None => self.core.index().state(&session).await?,
        };
        Ok(state == SessionState::Active)
    }

    /// What to write for a record about to be saved (or created, with `created`).
    pub(super) async fn before_write(
        &self,
        id: &str,
        data: &HashMap<String, Value>,
        expiry: OffsetDateTime,
    ) -> Result<Write, RuleError> {
        let Some(login) = login_in(data)? else {
            return Ok(Write::AsIs);
        };
        let Some(ttl) = self.remaining(expiry, &login) else {
            return Ok(Write::Expired);
        };
        let now = OffsetDateTime::now_utc();
        let expiry = expiry.min(now + ttl);
        let session = key(id, &login);
        let print = fingerprint(&login);
        if let Some(indexed) = indexed_in(data)
            && indexed.id == id
            && indexed.login == print
        {
            if self.core.index().known_state(&session) == Some(SessionState::Ended) {
                return Ok(Write::Ended);
            }
            // Two seconds of margin: the backend's clock reading rounds down to the second.
            if unix(expiry).saturating_add(2) <= indexed.until {
                return Ok(Write::Patched {
                    expiry,
                    indexed: None,
                });
            }
        }
        let mut index_ttl = ttl + slack(ttl);
        if let Some(absolute) = self
            .policies
            .get(login.policy.as_deref(), &login.issuer)
            .absolute_lifetime
        {
            let ends = login.logged_in_at.saturating_add(absolute.as_secs());
            index_ttl =
                index_ttl.min(Duration::from_secs(ends.saturating_sub(unix_now())).max(ttl));
        }
        let record = SessionRecord {
            session_id: id.to_owned(),
            issuer: login.issuer.clone().into_owned(),
            sub: login.sub.clone().into_owned(),
            sid: login.sid.clone().map(Cow::into_owned),
            auth_time: login.auth_time,
            ttl: index_ttl,
            customer: login.customer.clone().map(Cow::into_owned),
        };
        let registered_at = unix_now();
        if self.core.index().register(&record).await? == Registration::LoggedOut {
            return Ok(Write::Ended);
        }
        // The backend counts the lifetime from its own clock reading, after this one, in whole
        // seconds: the entry lives until about this (up to a second less, hence the margin
        // above), whatever the offset between the two clocks.
        let indexed = Indexed {
            id: Cow::Borrowed(id),
            login: Cow::Owned(print),
            until: registered_at.saturating_add(index_ttl.as_secs()),
        };
        Ok(Write::Patched {
            expiry,
            indexed: serde_json::to_value(indexed).ok(),
        })
    }

    /// The login of `data` with its tokens sealed, when there are keys and it holds a token in
    /// the clear: what the store gets instead of the session's own (which keeps them open for
    /// the rest of the request).
    pub(super) fn sealed_login(
        &self,
        data: &HashMap<String, Value>,
    ) -> Result<Option<Value>, RuleError> {
        let (Some(keys), Some(login)) = (&self.keys, data.get(LOGIN_KEY)) else {
            return Ok(None);
        };
        keys.seal_login(login)
            .map_err(|e| RuleError::Seal(e.to_string()))
    }

    /// Whether a save of `data` must first compare its login's generation with the stored one:
    /// when it holds a refresh token (which a refresh rotates) and the inner store does not
    /// compare by itself. A refresh token written back over its successor would be spent twice,
    /// and an OP that detects reuse revokes them all.
    pub(super) fn compares_generations(&self, data: &HashMap<String, Value>) -> bool {
        !self.store_keeps_generations && holds_refresh_token(data)
    }

    /// Open the sealed tokens of a loaded record's login.
    pub(super) fn open_tokens(&self, data: &mut HashMap<String, Value>) {
        if let Some(login) = data.get_mut(LOGIN_KEY) {
            open_login(self.keys.as_ref(), login);
        }
    }

    /// End a session in the index before it is deleted from the store (`data`: what it held):
    /// the application's own logout, through the core like every other.
    pub(super) async fn before_delete(
        &self,
        id: &str,
        data: &HashMap<String, Value>,
    ) -> Result<(), RuleError>
    where
        I: RecordStore,
    {
        if let Ok(Some(login)) = login_in(data) {
            let sender = Sender::new(
                "application",
                "",
                Scope::user(login.issuer.as_ref(), login.sub.as_ref()),
            );
            let end = Action::EndSession {
                issuer: login.issuer.clone().into_owned(),
                session_id: id.to_owned(),
                sub: Some(login.sub.clone().into_owned()),
            };
            self.core
                .apply(Event::new(sender, vec![end]))
                .await
                .map_err(|e| match e {
                    CoreError::Unavailable(error) => RuleError::Index(error),
                    other => RuleError::Index(StoreError::Unexpected(other.to_string())),
                })?;
        }
        Ok(())
    }
}

/// Apply a [`Write::Patched`] to a record's parts.
fn patch(
    data: &mut HashMap<String, Value>,
    expiry_date: &mut OffsetDateTime,
    expiry: OffsetDateTime,
    indexed: Option<Value>,
) {
    *expiry_date = expiry;
    if let Some(indexed) = indexed {
        data.insert(INDEXED_KEY.to_owned(), indexed);
    }
}

macro_rules! implement {
    ($ts:ident) => {
        impl From<RuleError> for $ts::session_store::Error {
            fn from(error: RuleError) -> Self {
                match error {
                    RuleError::Index(error) => Self::Backend(error.to_string()),
                    RuleError::Decode(why) => Self::Decode(why),
                    RuleError::Seal(why) => Self::Encode(why),
                }
            }
        }

        #[async_trait::async_trait]
        impl<S, I> $ts::session_store::SessionStore for LogoutAware<S, I>
        where
            S: $ts::session_store::SessionStore,
            I: SessionIndex + RecordStore + std::fmt::Debug,
        {
            async fn create(
                &self,
                record: &mut $ts::session::Record,
            ) -> $ts::session_store::Result<()> {
                // Always a fresh id: after `flush`, tower-sessions creates the next session with
                // the id of the one just deleted, so an ended session's id (and a cookie stolen
                // with it) would name the new session.
                record.id = $ts::session::Id::default();
                let id = record.id.to_string();
                match self
                    .before_write(&id, &record.data, record.expiry_date)
                    .await?
                {
                    Write::AsIs => {}
                    Write::Patched { expiry, indexed } => {
                        patch(&mut record.data, &mut record.expiry_date, expiry, indexed);
                    }
                    // Nothing to store: the cookie will name a session that does not exist.
                    Write::Ended | Write::Expired => return Ok(()),
                }
                // The store gets the tokens sealed; the session keeps them open.
                let mut stored = match self.sealed_login(&record.data)? {
                    Some(login) => {
                        let mut sealed = record.clone();
                        sealed.data.insert(LOGIN_KEY.to_owned(), login);
                        Cow::Owned(sealed)
                    }
                    None => Cow::Borrowed(&*record),
                };
                self.inner.create(stored.to_mut()).await?;
                let created = stored.id;
                record.id = created;
                let created = created.to_string();
                if created != id {
                    // The store drew another id (a collision): register that one instead.
                    self.before_delete(&id, &record.data).await?;
                    record.data.remove(INDEXED_KEY);
                    match self
                        .before_write(&created, &record.data, record.expiry_date)
                        .await?
                    {
                        Write::Patched { expiry, indexed } => {
                            patch(&mut record.data, &mut record.expiry_date, expiry, indexed);
                            let mut stored = record.clone();
                            if let Some(login) = self.sealed_login(&record.data)? {
                                stored.data.insert(LOGIN_KEY.to_owned(), login);
                            }
                            self.inner.save(&stored).await?;
                        }
                        Write::AsIs => {}
                        Write::Ended | Write::Expired => self.inner.delete(&record.id).await?,
                    }
                }
                Ok(())
            }

            async fn save(&self, record: &$ts::session::Record) -> $ts::session_store::Result<()> {
                let id = record.id.to_string();
                match self
                    .before_write(&id, &record.data, record.expiry_date)
                    .await?
                {
                    Write::AsIs => self.inner.save(record).await,
                    Write::Patched { expiry, indexed } => {
                        let mut stored = Cow::Borrowed(record);
                        if expiry != record.expiry_date || indexed.is_some() {
                            let patched = stored.to_mut();
                            patch(&mut patched.data, &mut patched.expiry_date, expiry, indexed);
                        }
                        // A refresh may have saved newer tokens since this request loaded the
                        // session: keep them (the stored ones are sealed already).
                        if self.compares_generations(&record.data)
                            && let Some(current) = self.inner.load(&record.id).await?
                            && login_generation(&current.data) > login_generation(&record.data)
                        {
                            keep_newer_login(&mut stored.to_mut().data, &current.data);
                        }
                        if let Some(login) = self.sealed_login(&stored.data)? {
                            stored.to_mut().data.insert(LOGIN_KEY.to_owned(), login);
                        }
                        self.inner.save(&stored).await
                    }
                    Write::Ended => Ok(()),
                    Write::Expired => {
                        self.before_delete(&id, &record.data).await?;
                        self.inner.delete(&record.id).await
                    }
                }
            }

            async fn load(
                &self,
                id: &$ts::session::Id,
            ) -> $ts::session_store::Result<Option<$ts::session::Record>> {
                let Some(mut record) = self.inner.load(id).await? else {
                    return Ok(None);
                };
                let allowed = self
                    .may_load(&id.to_string(), &record.data, record.expiry_date)
                    .await?;
                // A refused record is left to expire in the store: the receiver may still read
                // its refresh token to revoke it, and a load never hands it out again.
                if !allowed {
                    return Ok(None);
                }
                self.open_tokens(&mut record.data);
                Ok(Some(record))
            }

            async fn delete(&self, id: &$ts::session::Id) -> $ts::session_store::Result<()> {
                if let Some(record) = self.inner.load(id).await? {
                    self.before_delete(&id.to_string(), &record.data).await?;
                }
                self.inner.delete(id).await
            }
        }
    };
}

for_each_tower_sessions!(implement);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_outlives_its_session_by_a_bounded_slack() {
        assert_eq!(slack(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(slack(Duration::from_secs(400)), Duration::from_secs(100));
        assert_eq!(
            slack(Duration::from_secs(86_400)),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn a_changed_login_is_a_new_registration() {
        let login = |sub: &'static str, sid: Option<&'static str>, auth_time| LoginFacts {
            issuer: Cow::Borrowed("https://op.example"),
            sub: Cow::Borrowed(sub),
            sid: sid.map(Cow::Borrowed),
            auth_time,
            logged_in_at: 0,
            policy: None,
            customer: None,
        };
        let base = fingerprint(&login("alice", Some("s1"), 10));
        assert_eq!(base, fingerprint(&login("alice", Some("s1"), 10)));
        for other in [
            login("bob", Some("s1"), 10),
            login("alice", Some("s2"), 10),
            login("alice", None, 10),
            login("alice", Some("s1"), 11),
        ] {
            assert_ne!(base, fingerprint(&other));
        }
        // The separators keep parts apart: ("ab", "c") is not ("a", "bc").
        assert_ne!(
            fingerprint(&login("ab", Some("c"), 1)),
            fingerprint(&login("a", Some("bc"), 1))
        );
    }
}
