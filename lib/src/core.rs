//! The one place sessions end.
//!
//! Every input — a verified back-channel logout token, the admin API and CLI, a Shared Signals
//! event, a FusionAuth webhook — authenticates what it received and then asks the [`Core`] for
//! one action: apply a logout as of its `iat`, end one session, end some clients' sessions, end
//! a user's sessions as of now, revoke a user or an OP session. The core owns what those actions
//! share: the session [index](crate::index), the per-issuer settings (how long access tokens
//! live, hence the denylist markers) and the after-logout hooks (refresh-token revocation).
//!
//! Once an action starts changing state it runs to completion in a task of its own, hooks
//! included, whatever happens to the request that asked for it: a sender that hangs up right
//! after its request cannot leave a logout applied in Redis but with its refresh tokens alive
//! (the OP's retry would be refused as a replay).
//!
//! "As of now" is a logout time: a session authenticated before the call ends, one
//! authenticated later survives.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use crate::index::{
    Deny, Logout, LogoutOutcome, RecordStore, SessionIndex, SessionInfo, StoreError, Target,
};
use crate::logout_token::LogoutToken;
use crate::sys::unix_now;

/// How long denylist markers last unless set per issuer: as long as an access token can live at
/// most OPs (Keycloak 5 min, Okta and Entra about an hour).
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// How long an event id (a Security Event Token's `jti`, a webhook's id) is remembered once
/// its event was applied.
pub const EVENT_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);

/// How old an event may be unless configured: senders retry failed deliveries for hours, not
/// days, and an older event is more likely a replay than news.
pub const DEFAULT_EVENT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The longest event age that may be configured: a day shorter than [`EVENT_MEMORY`], so a
/// replay is refused either as stale or as seen before, by construction.
pub const MAX_EVENT_MAX_AGE: Duration = Duration::from_secs(6 * 24 * 3600);

/// How far the OP's clock may be ahead of this one, by default, for revocations that come from
/// no token (see [`CoreBuilder::clock_skew`]).
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Work to do after sessions ended, such as revoking their refresh tokens
/// ([`rp::RefreshTokenRevocation`](crate::rp::RefreshTokenRevocation)).
pub trait AfterLogout: Send + Sync + 'static {
    /// Called with the issuer and the ids of the sessions just ended, before the input answers:
    /// it must not block (queue or spawn the work).
    fn sessions_ended(&self, issuer: &str, session_ids: &[String]);
}

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The issuer is not one this core is configured for. (The issuer is not repeated: it may
    /// come from a request that is not authenticated yet.)
    #[error("unknown issuer: it is not configured here")]
    UnknownIssuer,
    /// A session to end by id alone whose user cannot be found (its record is not in this
    /// crate's store, e.g. behind a wrapped store): name its `sub` too. Nothing was changed.
    #[error("the session's user is not known here: give its sub as well")]
    UserUnknown,
    /// The index could not be read or written: nothing may be assumed done.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

/// A live session with what its application recorded at login.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SessionView {
    /// The application's session id.
    pub session_id: String,
    /// The OP session, when known.
    pub sid: Option<String>,
    /// The client (application) that logged the user in, when its login names one.
    pub client_id: Option<String>,
    /// When the user authenticated at the OP (seconds since the epoch).
    pub auth_time: u64,
    /// When the application established the session (seconds since the epoch), when its record
    /// is in this crate's store.
    pub logged_in_at: Option<u64>,
    /// Until when the index keeps the session unless its application extends it (seconds since
    /// the epoch; 0 for a session of the version 1 layout).
    pub indexed_until: u64,
    /// The session policy its login chose, when one was named.
    pub policy: Option<String>,
    /// When a request of the session last arrived (to the minute), when the application records
    /// it (`SessionDetails`).
    pub last_seen: Option<u64>,
    /// The user agent of its latest request, when the application records client details.
    pub user_agent: Option<String>,
    /// The client address of its latest request, likewise.
    pub address: Option<String>,
}

/// The session-ending core: cheap to clone, clones share everything.
pub struct Core<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for Core<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<S> {
    index: S,
    /// Per issuer: how long its access tokens live (the denylist markers' lifetime), if markers
    /// are written at all.
    issuers: HashMap<String, Option<Duration>>,
    hooks: Vec<Arc<dyn AfterLogout>>,
    clock_skew: Duration,
}

impl<S> std::fmt::Debug for Core<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("issuers", &self.shared.issuers)
            .field("hooks", &self.shared.hooks.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Core`]: its issuers and after-logout hooks.
pub struct CoreBuilder<S> {
    index: S,
    issuers: HashMap<String, Option<Duration>>,
    hooks: Vec<Arc<dyn AfterLogout>>,
    clock_skew: Duration,
}

impl<S> std::fmt::Debug for CoreBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreBuilder")
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

impl<S> CoreBuilder<S> {
    /// Accept `issuer`, whose access tokens live [`DEFAULT_ACCESS_TOKEN_LIFETIME`] at most.
    #[must_use]
    pub fn issuer(self, issuer: impl Into<String>) -> Self {
        self.issuer_with_lifetime(issuer, Some(DEFAULT_ACCESS_TOKEN_LIFETIME))
    }

    /// Accept `issuer`; its logouts and revocations write access-token denylist markers lasting
    /// `access_token_lifetime` (none when `None`).
    #[must_use]
    pub fn issuer_with_lifetime(
        mut self,
        issuer: impl Into<String>,
        access_token_lifetime: Option<Duration>,
    ) -> Self {
        self.issuers.insert(issuer.into(), access_token_lifetime);
        self
    }

    /// Run `hook` with the sessions every action ends.
    #[must_use]
    pub fn after_logout(mut self, hook: Arc<dyn AfterLogout>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// How far an OP's clock may be ahead of this one (default [`DEFAULT_CLOCK_SKEW`]). A
    /// revocation that comes from no token (admin, Shared Signals, webhooks) happens at this
    /// process's "now", while access tokens carry the OP's `iat`: its denylist marker refuses
    /// tokens issued up to `now + skew`, so a token the OP issued just before the revocation is
    /// refused even when the OP's clock is ahead. The price: a user revoked and re-enabled within
    /// the skew has the tokens of that short window refused too, and logs in again.
    #[must_use]
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The core.
    pub fn build(self) -> Core<S> {
        Core {
            shared: Arc::new(Shared {
                index: self.index,
                issuers: self.issuers,
                hooks: self.hooks,
                clock_skew: self.clock_skew,
            }),
        }
    }
}

impl<S: SessionIndex> Core<S> {
    /// A core over `index`, for no issuer yet.
    pub fn builder(index: S) -> CoreBuilder<S> {
        CoreBuilder {
            index,
            issuers: HashMap::new(),
            hooks: Vec::new(),
            clock_skew: DEFAULT_CLOCK_SKEW,
        }
    }

    /// The index, for reading (readiness, an application's own session checks).
    pub fn index(&self) -> &S {
        &self.shared.index
    }

    /// Whether `issuer` is configured.
    pub fn knows(&self, issuer: &str) -> bool {
        self.shared.issuers.contains_key(issuer)
    }

    fn lifetime(&self, issuer: &str) -> Result<Option<Duration>, CoreError> {
        self.shared
            .issuers
            .get(issuer)
            .copied()
            .ok_or(CoreError::UnknownIssuer)
    }

    /// Run state-changing `work` to completion (see [`to_completion`]).
    async fn to_completion<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, CoreError>> + Send + 'static,
    ) -> Result<T, CoreError> {
        to_completion(work)
            .await
            .unwrap_or_else(|| Err(StoreError::Unexpected("the action failed".into()).into()))
    }

    fn ended(&self, issuer: &str, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        for hook in &self.shared.hooks {
            hook.sessions_ended(issuer, ids);
        }
    }

    /// Apply a verified back-channel logout token: end the sessions it names that were
    /// authenticated at or before its `iat`, write its denylist marker, remember its `jti`
    /// (atomically with the rest, so a retry after a failure is applied and a replay after a
    /// success is refused), and run the hooks.
    /// Returns the token with the outcome.
    pub async fn apply_logout(
        &self,
        token: LogoutToken,
    ) -> Result<(LogoutToken, LogoutOutcome), CoreError> {
        let deny_for = self.lifetime(&token.issuer)?;
        let core = self.clone();
        self.to_completion(async move {
            let mut logout = token.to_logout();
            logout.deny = deny_for.map(|lifetime| Deny {
                issued_until: token.issued_at,
                lifetime,
            });
            let outcome = core.shared.index.logout(&logout).await?;
            if let LogoutOutcome::Applied { ended } = &outcome {
                tracing::info!(issuer = %token.issuer, ended = ended.len(), "logout applied");
                core.ended(&token.issuer, ended);
            }
            Ok((token, outcome))
        })
        .await
    }

    /// End every session of a user authenticated until now, without a denylist marker (access
    /// tokens already issued stay usable until they expire): "log out everywhere".
    pub async fn end_user_sessions(
        &self,
        issuer: &str,
        sub: &str,
    ) -> Result<Vec<String>, CoreError> {
        self.lifetime(issuer)?;
        self.as_of_now(issuer, Subject::User(sub.to_owned()), None)
            .await
    }

    /// Revoke a user: end every session authenticated until now, refuse registrations of
    /// sessions authenticated before now, write the user's denylist marker, and revoke the
    /// refresh tokens the sessions hold (through the hooks).
    pub async fn revoke_user(&self, issuer: &str, sub: &str) -> Result<Vec<String>, CoreError> {
        let deny_for = self.lifetime(issuer)?;
        self.as_of_now(issuer, Subject::User(sub.to_owned()), deny_for)
            .await
    }

    /// End the sessions of one OP session as of now, with its denylist marker (a CAEP
    /// `session-revoked` naming it).
    pub async fn revoke_op_session(
        &self,
        issuer: &str,
        sid: &str,
    ) -> Result<Vec<String>, CoreError> {
        let deny_for = self.lifetime(issuer)?;
        self.as_of_now(issuer, Subject::OpSession(sid.to_owned()), deny_for)
            .await
    }

    async fn as_of_now(
        &self,
        issuer: &str,
        subject: Subject,
        deny_for: Option<Duration>,
    ) -> Result<Vec<String>, CoreError> {
        let (core, issuer) = (self.clone(), issuer.to_owned());
        self.to_completion(async move {
            let target = match &subject {
                Subject::User(sub) => Target::Sub { sub },
                Subject::OpSession(sid) => Target::Sid { sid, sub: None },
            };
            let now = unix_now();
            let skew = core.shared.clock_skew.as_secs();
            let logout = Logout {
                issuer: &issuer,
                target,
                issued_at: now,
                jti: None,
                deny: deny_for.map(|lifetime| Deny {
                    issued_until: now.saturating_add(skew),
                    lifetime,
                }),
            };
            match core.shared.index.logout(&logout).await? {
                LogoutOutcome::Applied { ended } => {
                    core.ended(&issuer, &ended);
                    Ok(ended)
                }
                // Only a logout with a jti can be a replay.
                LogoutOutcome::Replayed => Ok(Vec::new()),
            }
        })
        .await
    }

    /// Whether an event (a Security Event Token, a webhook) with this id, from a source acting
    /// for `issuer`, was handled before.
    pub async fn event_seen(&self, issuer: &str, id: &str) -> Result<bool, CoreError> {
        Ok(self.shared.index.event_seen(issuer, id).await?)
    }

    /// Remember that an event was handled, for [`EVENT_MEMORY`] (after its actions, so that a
    /// failure leaves it to be handled again).
    pub async fn remember_event(&self, issuer: &str, id: &str) -> Result<(), CoreError> {
        Ok(self
            .shared
            .index
            .remember_event(issuer, id, EVENT_MEMORY)
            .await?)
    }
}

/// Run `work` in a task of its own and wait for it: if the caller is dropped (its client hung
/// up), the work still finishes. In the caller's span, so its log lines carry the request's id.
/// `None` if the work panicked.
pub(crate) async fn to_completion<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    tokio::spawn(work.instrument(tracing::Span::current()))
        .await
        .ok()
}

/// Whose sessions an action as of now ends.
enum Subject {
    User(String),
    OpSession(String),
}

impl<S: SessionIndex + RecordStore> Core<S> {
    /// The live sessions of a user, with the client and login time their records hold.
    pub async fn sessions(&self, issuer: &str, sub: &str) -> Result<Vec<SessionView>, CoreError> {
        self.lifetime(issuer)?;
        let index = &self.shared.index;
        let infos = index.sessions(issuer, sub).await?;
        let ids: Vec<String> = infos.iter().map(|i| i.session_id.clone()).collect();
        let records = index.get_records(&ids).await?;
        Ok(infos
            .into_iter()
            .zip(records)
            .map(|(info, record)| view(info, record.as_deref().and_then(login_of)))
            .collect())
    }

    /// End one session by its id. Returns whether a live session was ended (a marker for its id
    /// refuses it everywhere from now on, even when it was not known). The user (`sub`) finds
    /// its index entry; without it, the login its record holds in this crate's store does, and
    /// when there is no such record the call fails with [`CoreError::UserUnknown`] and changes
    /// nothing.
    pub async fn end_session(
        &self,
        issuer: &str,
        session_id: &str,
        sub: Option<&str>,
    ) -> Result<bool, CoreError> {
        self.lifetime(issuer)?;
        let sub = match sub {
            Some(sub) => Some(sub.to_owned()),
            None => self
                .shared
                .index
                .get_record(session_id)
                .await?
                .as_deref()
                .and_then(login_of)
                .filter(|login| login.issuer == issuer)
                .map(|login| login.sub)
                .ok_or(CoreError::UserUnknown)
                .map(Some)?,
        };
        let (core, issuer, id) = (self.clone(), issuer.to_owned(), session_id.to_owned());
        self.to_completion(async move {
            let ended = core
                .shared
                .index
                .end_session(&issuer, &id, sub.as_deref())
                .await?;
            if ended {
                core.ended(&issuer, std::slice::from_ref(&id));
            }
            Ok(ended)
        })
        .await
    }

    /// End the sessions of a user whose client is one of `clients` (the login's `client_id`);
    /// returns their ids.
    pub async fn end_client_sessions(
        &self,
        issuer: &str,
        sub: &str,
        clients: &[String],
    ) -> Result<Vec<String>, CoreError> {
        let wanted: Vec<String> = self
            .sessions(issuer, sub)
            .await?
            .into_iter()
            .filter(|s| s.client_id.as_ref().is_some_and(|c| clients.contains(c)))
            .map(|s| s.session_id)
            .collect();
        let (core, issuer, sub) = (self.clone(), issuer.to_owned(), sub.to_owned());
        self.to_completion(async move {
            let mut ended = Vec::new();
            for id in wanted {
                if core
                    .shared
                    .index
                    .end_session(&issuer, &id, Some(&sub))
                    .await?
                {
                    ended.push(id);
                }
            }
            core.ended(&issuer, &ended);
            Ok(ended)
        })
        .await
    }
}

/// What the login a session record holds says, if it can be read.
struct RecordedLogin {
    issuer: String,
    sub: String,
    #[cfg_attr(not(feature = "session-store"), allow(dead_code))]
    recorded: Recorded,
}

#[cfg(feature = "session-store")]
use crate::session_store::Recorded;

#[cfg(not(feature = "session-store"))]
#[derive(Default)]
struct Recorded {
    client_id: Option<String>,
    policy: Option<String>,
    logged_in_at: Option<u64>,
    last_seen: Option<u64>,
    user_agent: Option<String>,
    address: Option<String>,
}

/// The login a session record of this crate's store holds, if any.
fn login_of(record: &[u8]) -> Option<RecordedLogin> {
    #[cfg(feature = "session-store")]
    {
        crate::session_store::recorded_of_bytes(record).map(|(login, recorded)| RecordedLogin {
            issuer: login.issuer,
            sub: login.sub,
            recorded,
        })
    }
    #[cfg(not(feature = "session-store"))]
    {
        let _ = record;
        None
    }
}

fn view(info: SessionInfo, login: Option<RecordedLogin>) -> SessionView {
    let recorded = login.map(|l| l.recorded).unwrap_or_default();
    SessionView {
        session_id: info.session_id,
        sid: info.sid,
        client_id: recorded.client_id,
        auth_time: info.auth_time,
        logged_in_at: recorded.logged_in_at,
        indexed_until: info.indexed_until,
        policy: recorded.policy,
        last_seen: recorded.last_seen,
        user_agent: recorded.user_agent,
        address: recorded.address,
    }
}
