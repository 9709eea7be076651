//! The one door: every way a session ends goes through [`Core::apply`].
//!
//! An input — a back-channel logout token, the admin API and CLI, a Shared Signals event, a
//! FusionAuth webhook, a SCIM deprovisioning, an Okta Universal Logout, a failed revalidation
//! at the OP, a user ending their own session, the application's own logout — authenticates
//! what it received, names its [`Sender`] (and the sender's [`Scope`]), and hands the core an
//! [`Event`]: its id if it has one, and the [`Action`]s it asks for. The core, and only the core:
//!
//! 1. **enforces the scope**, whatever the event names: an issuer outside the sender's (or one
//!    the core is not configured for) is refused before anything happens; a sender scoped to a
//!    customer acts only on the users whose login recorded that customer, so that nothing it
//!    sends reaches another customer's sessions or writes their denylist markers;
//! 2. **applies an event once**: ids are namespaced by sender; a logout token's `jti` is
//!    remembered atomically with the logout, any other id is claimed before the actions and
//!    kept as applied after them (given back on failure, so the sender's retry applies it);
//! 3. **runs it to completion** in a task of its own, whatever happens to the request that
//!    asked for it (a sender that hangs up cannot leave a logout applied but its refresh tokens
//!    alive);
//! 4. **applies the clock skew** to revocations that come from no token: their denylist marker
//!    refuses tokens issued up to now plus the skew, as the OP's clock may be ahead;
//! 5. **runs the after-logout hooks** (refresh-token revocation) with every session an action
//!    ended;
//! 6. **writes the one audit line** of the event (target `oidc_logout::audit`).
//!
//! Nothing else in the crate writes a marker or removes an index entry. "As of now" is a
//! logout time: a session authenticated before the event ends, one authenticated later survives.

mod activity;
mod audit;
mod event;
#[cfg(test)]
mod tests;
mod view;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

pub use self::activity::Activity;
#[cfg(feature = "server")]
pub(crate) use self::activity::session_handle;
#[doc(hidden)]
pub use self::audit::TARGET as AUDIT_TARGET;
pub use self::event::{Action, Done, Event, Outcome, Scope, Sender};
pub use self::view::SessionView;
pub use crate::index::SidLogout;

use self::event::Once;
use crate::index::{
    Deny, EventClaim, Logout, LogoutOutcome, RecordStore, SessionIndex, StoreError, Target,
    encode_component,
};
use crate::logout_token::LogoutToken;
use crate::sys::unix_now;

/// How long denylist markers last unless set per issuer: as long as an access token can live at
/// most OPs (Keycloak 5 min, Okta and Entra about an hour).
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// How long an event id (a Security Event Token's `jti`, a webhook's id) is remembered once
/// its event was applied.
#[doc(hidden)]
pub const EVENT_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a delivery holds an event's id while it applies it: a process that dies meanwhile
/// blocks the sender's retry for no longer than this.
const EVENT_LEASE: Duration = Duration::from_secs(30);

/// How old an event may be unless configured: senders retry failed deliveries for hours, not
/// days, and an older event is more likely a replay than news.
#[doc(hidden)]
pub const DEFAULT_EVENT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The longest event age that may be configured: a day shorter than [`EVENT_MEMORY`], so a
/// replay is refused either as stale or as seen before, by construction.
#[doc(hidden)]
pub const MAX_EVENT_MAX_AGE: Duration = Duration::from_secs(6 * 24 * 3600);

/// How far the OP's clock may be ahead of this one, by default, for revocations that come from
/// no token (see [`CoreBuilder::clock_skew`]).
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Work to do after sessions ended, such as revoking their refresh tokens
/// ([`rp::RefreshTokenRevocation`](crate::rp::RefreshTokenRevocation)).
pub trait AfterLogout: Send + Sync + 'static {
    /// Called with what an action just ended, before the input answers: it must not block
    /// (queue or spawn the work).
    fn sessions_ended(&self, ended: &Ended<'_>);
}

/// What one action ended, for the [`AfterLogout`] hooks.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Ended<'a> {
    /// The issuer of the sessions.
    pub issuer: &'a str,
    /// The ids of the sessions ended (at least one).
    pub session_ids: &'a [String],
    /// The verified logout token that asked for it, when one did: its `sub`, `sid` and every
    /// claim the OP sent ([`LogoutToken::claims`]).
    pub token: Option<&'a LogoutToken>,
}

/// Why an event was not applied. Nothing was changed, except where a failure midway is
/// reported (the log line says how far it got; every action is safe to repeat).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The issuer is not one this core is configured for. (The issuer is not repeated: it may
    /// come from a request that is not authenticated yet.)
    #[error("unknown issuer: it is not configured here")]
    UnknownIssuer,
    /// The event names an issuer or a user outside its sender's scope.
    #[error("the event names sessions outside its sender's scope")]
    OutOfScope,
    /// A session to end by id alone whose user cannot be found (its record is not in this
    /// crate's store, e.g. behind a wrapped store): name its `sub` too.
    #[error("the session's user is not known here: give its sub as well")]
    UserUnknown,
    /// Another delivery of the same event is being applied right now: retry shortly.
    #[error("this event is being applied by another delivery; retry shortly")]
    Busy,
    /// The event cannot be applied as it is (an empty user or session id, an id without one
    /// issuer to keep it under).
    #[error("the event is refused: {0}")]
    Invalid(&'static str),
    /// The index could not be read or written: nothing may be assumed done.
    #[error(transparent)]
    Unavailable(StoreError),
}

impl From<StoreError> for CoreError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid(why) => Self::Invalid(why),
            other => Self::Unavailable(other),
        }
    }
}

impl CoreError {
    /// A stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::UnknownIssuer => "unknown_issuer",
            Self::OutOfScope => "out_of_scope",
            Self::UserUnknown => "user_unknown",
            Self::Busy => "busy",
            Self::Invalid(_) => "invalid",
            Self::Unavailable(_) => "unavailable",
        }
    }
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
    /// Per issuer: what a logout naming an OP session ends (the default when absent).
    sid_logout: HashMap<String, SidLogout>,
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
    sid_logout: HashMap<String, SidLogout>,
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
    /// revocation that comes from no token (admin, Shared Signals, webhooks, SCIM, a refused
    /// revalidation) happens at this process's "now", while access tokens carry the OP's `iat`:
    /// its denylist marker refuses tokens issued up to `now + skew`, so a token the OP issued
    /// just before the revocation is refused even when the OP's clock is ahead. The price: a
    /// user revoked and re-enabled within the skew has the tokens of that short window refused
    /// too, and logs in again.
    #[must_use]
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// What a logout token naming an OP session (`sid`) of `issuer` ends ([`SidLogout`]):
    /// that session's sessions (the default), also the user's sessions registered without a
    /// `sid`, or every session of the user.
    #[must_use]
    pub fn sid_logout(mut self, issuer: impl Into<String>, mode: SidLogout) -> Self {
        self.sid_logout.insert(issuer.into(), mode);
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
                sid_logout: self.sid_logout,
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
            sid_logout: HashMap::new(),
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

    /// How long the issuer's denylist markers last (none written when `None`). An issuer the
    /// core is not configured for gets none: only a sender scoped to it can name it (the
    /// application's own logout, a user's), and those actions write no denylist marker.
    fn marker_lifetime(&self, issuer: &str) -> Option<Duration> {
        self.shared.issuers.get(issuer).copied().flatten()
    }

    fn ended(&self, issuer: &str, ids: &[String]) {
        self.ended_by(issuer, ids, None);
    }

    /// Run the hooks for the sessions an action ended, with the token that asked, if any.
    fn ended_by(&self, issuer: &str, ids: &[String], token: Option<&LogoutToken>) {
        if ids.is_empty() {
            return;
        }
        let ended = Ended {
            issuer,
            session_ids: ids,
            token,
        };
        for hook in &self.shared.hooks {
            hook.sessions_ended(&ended);
        }
    }

    /// What a logout naming an OP session ends at `issuer`.
    fn sid_logout(&self, issuer: &str) -> SidLogout {
        self.shared
            .sid_logout
            .get(issuer)
            .copied()
            .unwrap_or_default()
    }
}

impl<S: SessionIndex + RecordStore> Core<S> {
    /// Apply an event: check every action against the sender's scope, apply the event once,
    /// to completion, with the hooks, and write its audit line. See the module docs.
    ///
    /// ```
    /// # async fn run() -> Result<(), oidc_logout::CoreError> {
    /// use oidc_logout::core::{Action, Event, Scope, Sender};
    /// use oidc_logout::{Core, MemoryIndex};
    ///
    /// let core = Core::builder(MemoryIndex::default()).issuer("https://op.example").build();
    /// let admin = Sender::new("admin", "ops-team", Scope::any_issuer());
    /// let revoke = Action::RevokeUser {
    ///     issuer: "https://op.example".into(),
    ///     sub: "alice".into(),
    /// };
    /// let outcome = core.apply(Event::new(admin, vec![revoke])).await?;
    /// assert_eq!(outcome.ended(), 0); // alice had no session yet
    /// # Ok(()) }
    /// ```
    pub async fn apply(&self, event: Event) -> Result<Outcome, CoreError> {
        let core = self.clone();
        to_completion(async move {
            // The action's span, a child of the request's (traces: docs/configuration.md).
            let span = tracing::info_span!(
                "core.apply",
                input = event.sender().input(),
                sender = event.sender().name(),
                action = %audit::kinds(&event),
                ended = tracing::field::Empty,
                outcome = tracing::field::Empty,
            );
            let result = core.run(&event).instrument(span.clone()).await;
            let (outcome, ended) = audit::outcome(&result);
            span.record("outcome", outcome);
            span.record("ended", ended);
            // The audit line in the request's span, where its request id is.
            audit::line(&event, &result);
            if let Some(entry) = activity::of(&event, &result) {
                activity::keep(core.index(), entry).await;
            }
            result
        })
        .await
        .unwrap_or_else(|| Err(StoreError::Unexpected("the event failed".into()).into()))
    }

    /// Refuse an event that names anything outside its sender's scope, before anything happens.
    fn admit(&self, event: &Event) -> Result<(), CoreError> {
        let scope = event.sender().scope();
        if event.actions().is_empty() {
            return Ok(());
        }
        for action in event.actions() {
            let issuer = action.issuer();
            match scope.the_issuer() {
                Some(own) if own != issuer => return Err(CoreError::OutOfScope),
                Some(_) => {}
                None if !self.knows(issuer) => return Err(CoreError::UnknownIssuer),
                None => {}
            }
            if let Some(user) = scope.the_user() {
                let own = match action {
                    Action::EndSession { sub, .. } => sub.as_deref() == Some(user),
                    Action::EndUserSessions { sub, .. } | Action::RevokeUser { sub, .. } => {
                        sub == user
                    }
                    Action::Logout(_) | Action::RevokeOpSession { .. } => false,
                };
                if !own {
                    return Err(CoreError::OutOfScope);
                }
            }
            let empty = match action {
                Action::Logout(_) => false,
                Action::EndSession {
                    session_id, sub, ..
                } => session_id.is_empty() || sub.as_deref() == Some(""),
                Action::EndUserSessions { sub, .. } | Action::RevokeUser { sub, .. } => {
                    sub.is_empty()
                }
                Action::RevokeOpSession { sid, .. } => sid.is_empty(),
            };
            if empty || issuer.is_empty() {
                return Err(CoreError::Invalid(
                    "an action names an empty issuer, user or session",
                ));
            }
        }
        if event.id.is_some() && self.event_issuer(event).is_none() {
            return Err(CoreError::Invalid(
                "an event id needs a sender scoped to one issuer",
            ));
        }
        Ok(())
    }

    /// The issuer under which an event's id is kept: its sender's.
    fn event_issuer<'e>(&self, event: &'e Event) -> Option<&'e str> {
        event.sender().scope().the_issuer()
    }

    /// Admit an event and apply it once.
    async fn run(&self, event: &Event) -> Result<Outcome, CoreError> {
        // A single-use id is spent by its first delivery, even one refused as out of scope.
        if let Some((id, Once::SingleUse)) = &event.id {
            let issuer = self.event_issuer(event).ok_or(CoreError::Invalid(
                "an event id needs a sender scoped to one issuer",
            ))?;
            let key = event_key(event.sender(), id);
            match self
                .shared
                .index
                .claim_event(issuer, &key, EVENT_MEMORY)
                .await?
            {
                EventClaim::Claimed => {}
                EventClaim::Busy | EventClaim::Done => return Ok(Outcome::Duplicate),
            }
            self.admit(event)?;
            let done = self.actions(event).await?;
            self.shared
                .index
                .finish_event(issuer, &key, EVENT_MEMORY)
                .await?;
            return Ok(Outcome::Applied(done));
        }
        self.admit(event)?;
        let Some((id, _)) = &event.id else {
            return self.actions(event).await.map(Outcome::Applied);
        };
        // A logout token's jti is remembered in the same script that ends the sessions.
        if let [Action::Logout(token)] = event.actions() {
            return Ok(match self.logout_token(token, Some(id)).await? {
                Some(done) => Outcome::Applied(vec![done]),
                None => Outcome::Duplicate,
            });
        }
        // Claimed for a while, kept once applied, given back on failure.
        let issuer = self.event_issuer(event).unwrap_or_default();
        let key = event_key(event.sender(), id);
        let index = &self.shared.index;
        match index.claim_event(issuer, &key, EVENT_LEASE).await? {
            EventClaim::Done => return Ok(Outcome::Duplicate),
            EventClaim::Busy => return Err(CoreError::Busy),
            EventClaim::Claimed => {}
        }
        match self.actions(event).await {
            Ok(done) => {
                index.finish_event(issuer, &key, EVENT_MEMORY).await?;
                Ok(Outcome::Applied(done))
            }
            Err(error) => {
                if let Err(release) = index.release_event(issuer, &key).await {
                    tracing::warn!(error = %release, "an event's claim could not be given back; it lapses by itself");
                }
                Err(error)
            }
        }
    }

    /// Apply each action in order; stop at the first failure.
    async fn actions(&self, event: &Event) -> Result<Vec<Done>, CoreError> {
        let total = event.actions().len();
        let mut done = Vec::with_capacity(total);
        for action in event.actions() {
            match self.action(event.sender().scope(), action).await {
                Ok(Some(d)) => done.push(d),
                Ok(None) => done.push(Done::default()),
                Err(error) => {
                    if !done.is_empty() {
                        tracing::error!(
                            done = done.len(),
                            total,
                            "an event was partly applied; its retry applies the rest"
                        );
                    }
                    return Err(error);
                }
            }
        }
        Ok(done)
    }

    /// Apply a logout token as of its `iat`, remembering its `jti` atomically when `jti` is
    /// given; `None` when that jti was applied before.
    async fn logout_token(
        &self,
        token: &LogoutToken,
        jti: Option<&str>,
    ) -> Result<Option<Done>, CoreError> {
        let mut logout = token.to_logout();
        if jti.is_none() {
            logout.jti = None;
        }
        logout.deny = self.marker_lifetime(&token.issuer).map(|lifetime| Deny {
            issued_until: token.issued_at,
            lifetime,
        });
        logout.sid_logout = self.sid_logout(&token.issuer);
        match self.shared.index.logout(&logout).await? {
            LogoutOutcome::Applied { ended } => {
                self.ended_by(&token.issuer, &ended, Some(token));
                Ok(Some(Done {
                    ended,
                    out_of_scope: false,
                }))
            }
            LogoutOutcome::Replayed => Ok(None),
        }
    }

    /// Whether a user is within a customer-scoped sender's reach: their login recorded the
    /// sender's customer. A user the index does not know as the customer's is not.
    pub(super) async fn reaches(
        &self,
        scope: &Scope,
        issuer: &str,
        sub: &str,
    ) -> Result<bool, CoreError> {
        let Some(customer) = scope.customer() else {
            return Ok(true);
        };
        Ok(self.shared.index.customer_of(issuer, sub).await?.as_deref() == Some(customer))
    }

    /// One action; `None` when it named nobody within reach.
    async fn action(&self, scope: &Scope, action: &Action) -> Result<Option<Done>, CoreError> {
        let out_of_scope = || {
            Some(Done {
                ended: Vec::new(),
                out_of_scope: true,
            })
        };
        match action {
            // Within an event of several actions: its id is the event's, not the token's.
            Action::Logout(token) => self.logout_token(token, None).await,
            Action::EndSession {
                issuer,
                session_id,
                sub,
            } => {
                let sub = match sub {
                    Some(sub) => sub.clone(),
                    None => self.user_of_record(issuer, session_id).await?,
                };
                if !self.reaches(scope, issuer, &sub).await? {
                    return Ok(out_of_scope());
                }
                let ended = self
                    .shared
                    .index
                    .end_session(issuer, session_id, Some(&sub))
                    .await?;
                let ended = if ended {
                    vec![session_id.clone()]
                } else {
                    Vec::new()
                };
                self.ended(issuer, &ended);
                Ok(Some(Done {
                    ended,
                    out_of_scope: false,
                }))
            }
            Action::EndUserSessions {
                issuer,
                sub,
                clients: None,
            } => {
                if !self.reaches(scope, issuer, sub).await? {
                    return Ok(out_of_scope());
                }
                self.as_of_now(issuer, Target::Sub { sub }, false).await
            }
            Action::EndUserSessions {
                issuer,
                sub,
                clients: Some(clients),
            } => {
                if !self.reaches(scope, issuer, sub).await? {
                    return Ok(out_of_scope());
                }
                let wanted: Vec<String> = self
                    .live_sessions(issuer, sub)
                    .await?
                    .into_iter()
                    .filter(|s| s.client_id.as_ref().is_some_and(|c| clients.contains(c)))
                    .map(|s| s.session_id)
                    .collect();
                let mut ended = Vec::new();
                for id in wanted {
                    if self
                        .shared
                        .index
                        .end_session(issuer, &id, Some(sub))
                        .await?
                    {
                        ended.push(id);
                    }
                }
                self.ended(issuer, &ended);
                Ok(Some(Done {
                    ended,
                    out_of_scope: false,
                }))
            }
            Action::RevokeUser { issuer, sub } => {
                if !self.reaches(scope, issuer, sub).await? {
                    return Ok(out_of_scope());
                }
                self.as_of_now(issuer, Target::Sub { sub }, true).await
            }
            Action::RevokeOpSession { issuer, sid } => {
                let Some(customer) = scope.customer() else {
                    return self
                        .as_of_now(issuer, Target::Sid { sid, sub: None }, true)
                        .await;
                };
                // Only the customer's users in the OP session: the whole OP session when they
                // are all the customer's, else each of the customer's users in it.
                let users = self.shared.index.op_session_users(issuer, sid).await?;
                let mut theirs = Vec::new();
                for user in &users {
                    if self
                        .shared
                        .index
                        .customer_of(issuer, user)
                        .await?
                        .as_deref()
                        == Some(customer)
                    {
                        theirs.push(user);
                    }
                }
                if !users.is_empty() && theirs.len() == users.len() {
                    return self
                        .as_of_now(issuer, Target::Sid { sid, sub: None }, true)
                        .await;
                }
                let mut done = Done {
                    ended: Vec::new(),
                    out_of_scope: theirs.len() < users.len() || users.is_empty(),
                };
                for sub in theirs {
                    let target = Target::Sid {
                        sid,
                        sub: Some(sub),
                    };
                    if let Some(d) = self.as_of_now(issuer, target, true).await? {
                        done.ended.extend(d.ended);
                    }
                }
                Ok(Some(done))
            }
        }
    }

    /// The user whose session this is, from the login its record holds in this crate's store.
    async fn user_of_record(&self, issuer: &str, session_id: &str) -> Result<String, CoreError> {
        self.shared
            .index
            .get_record(session_id)
            .await?
            .as_deref()
            .and_then(view::login_of)
            .filter(|login| login.issuer == issuer)
            .map(|login| login.sub)
            .ok_or(CoreError::UserUnknown)
    }

    /// End the sessions of `target` authenticated until now; with `deny`, write its denylist
    /// marker as of now plus the clock skew.
    async fn as_of_now(
        &self,
        issuer: &str,
        target: Target<'_>,
        deny: bool,
    ) -> Result<Option<Done>, CoreError> {
        let now = unix_now();
        let skew = self.shared.clock_skew.as_secs();
        let logout = Logout {
            issuer,
            target,
            issued_at: now,
            jti: None,
            deny: deny
                .then(|| self.marker_lifetime(issuer))
                .flatten()
                .map(|lifetime| Deny {
                    issued_until: now.saturating_add(skew),
                    lifetime,
                }),
            sid_logout: SidLogout::default(),
        };
        match self.shared.index.logout(&logout).await? {
            LogoutOutcome::Applied { ended } => {
                self.ended(issuer, &ended);
                Ok(Some(Done {
                    ended,
                    out_of_scope: false,
                }))
            }
            // Only a logout with a jti can be a replay.
            LogoutOutcome::Replayed => Ok(None),
        }
    }
}

/// The key of an event's id: namespaced by its sender (input and name), so that two senders'
/// ids never meet.
fn event_key(sender: &Sender, id: &str) -> String {
    format!(
        "{}:{}:{}",
        encode_component(sender.input()),
        encode_component(sender.name()),
        encode_component(id)
    )
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
