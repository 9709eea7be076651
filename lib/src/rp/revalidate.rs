//! Per-request policy checks: confirm at the OP that a user still has access when the session's
//! policy says it is time (`revalidate_after`), and send a session whose authentication is too
//! old (`max_auth_age`) back to log in.
//!
//! This is what bounds a disabled user's access when the IdP pushes nothing: the next request
//! after `revalidate_after` refreshes the tokens (or, without a refresh token, asks the userinfo
//! endpoint), and the OP's refusal ends the session before the request is served. Sessions whose
//! policy asks for neither cost one small read of the session per request and no OP call.
//!
//! One instance at a time revalidates a session (a lease in the index, [`SessionIndex::claim`]):
//! refresh tokens rotate, and two refreshes with the same token would look like a replay to the
//! OP. A request that finds the lease taken is served while the policy's grace lasts; past it
//! (`revalidate_after + unreachable_grace` for `unreachable = "closed"`), it waits for what the
//! holder finds and is served only if the OP confirmed — never on the strength of a
//! confirmation still under way. The holder decides by the clock after the OP answered (or
//! timed out), so the OP call's timeout counts against the bound, not on top of it: whatever
//! the OP does — hang, refuse connections, answer slowly or with errors — and however many
//! requests arrive at once, none is served unconfirmed after the bound.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Response, StatusCode, header};
use openidconnect::core::{CoreGenderClaim, CoreUserInfoClaims};
use openidconnect::{AccessToken, AsyncHttpClient, EmptyAdditionalClaims, SubjectIdentifier};
use serde::Deserialize;

use super::relying_party::{REAUTH_KEY, RelyingParty, RpError};
use super::{HttpClient, Refreshed};
use crate::core::{Action, Core, Event, Scope, Sender};
use crate::index::{RecordStore, SessionIndex};
use crate::session_store::{
    CHECK_KEY, CheckFacts, Login, PerRequest, Policies, Sealed, SessionAccess, SessionLayer,
    SessionPolicy, Unreachable,
};
use crate::sys::{unix_now, unix_now_ms};

/// How long one instance holds a session's revalidation: longer than a refresh takes (the OP
/// client gives up after 5 s), short enough that an OP that did not answer is asked again soon.
const LEASE: Duration = Duration::from_secs(10);

/// How often a request that waits for another's confirmation looks for its outcome.
const POLL: Duration = Duration::from_millis(50);

/// What a confirmation found, as the instances that waited for it read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Confirmed,
    Ended,
    NoAnswer,
}

impl Found {
    const ALL: [Self; 3] = [Self::Confirmed, Self::Ended, Self::NoAnswer];

    /// The lease that says so, for the confirmation of session `id` last confirmed at `at`.
    fn lease(self, id: &str, at: u64) -> String {
        let what = match self {
            Self::Confirmed => "ok",
            Self::Ended => "ended",
            Self::NoAnswer => "down",
        };
        format!("{what}:{id}:{at}")
    }
}

/// The outcome of [`Revalidation::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Checked {
    /// Serve the request (nothing was due, the OP confirmed access, another instance is
    /// confirming it, or the OP cannot answer and the policy keeps serving meanwhile).
    Pass,
    /// The OP confirmed the user's access: new tokens are in the session.
    Confirmed,
    /// The session ended: the OP refused (`invalid_grant`, an inactive token, an invalid
    /// refreshed ID token), or nothing could confirm access. The request finds no login.
    Ended(String),
    /// The authentication is older than the policy allows: the session ended, and the next
    /// login asks the OP to authenticate the user again (`max_age`).
    Reauthenticate,
    /// The OP cannot answer and the policy's grace is over: refuse the request (the session
    /// is kept, and confirmed as soon as the OP answers).
    Unavailable,
}

/// The per-request checks of [`SessionPolicy::revalidate_after`] and
/// [`SessionPolicy::max_auth_age`]: [`check`](Self::check) for one session, or
/// [`layer`](Self::layer) for every request of a router (inside the session layer).
#[derive(Debug)]
pub struct Revalidation<I, H = HttpClient> {
    shared: Arc<Shared<I, H>>,
}

impl<I, H> Clone for Revalidation<I, H> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

#[derive(Debug)]
struct Shared<I, H> {
    rp: RelyingParty<H>,
    core: Core<I>,
}

impl<H> RelyingParty<H>
where
    H: for<'c> AsyncHttpClient<'c, Future: Send, Error: Send + Sync>
        + Clone
        + Send
        + Sync
        + 'static,
{
    /// The per-request checks of the policies set with
    /// [`with_policies`](Self::with_policies), over `core`'s index (the revalidation lease), and
    /// through `core` when a refused user is logged out everywhere
    /// ([`SessionPolicy::revoke_user_for`]): with its clock skew, its denylist marker lifetime
    /// for the issuer and its after-logout hooks (refresh-token revocation).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use oidc_logout::rp::RelyingParty;
    /// use oidc_logout::session_store::{OidcSessionStore, Policies, SessionPolicy, Unreachable};
    /// use oidc_logout::MemoryIndex;
    /// use tower_sessions::SessionManagerLayer;
    ///
    /// // A disabled user is out within 5 minutes, even if the OP stops pushing logouts.
    /// let policy = SessionPolicy::default()
    ///     .with_revalidate_after(Duration::from_secs(240))
    ///     .with_unreachable(Unreachable::ClosedAfter(Duration::from_secs(60)));
    /// let rp = RelyingParty::discover("https://op.example", "web-app", None, "https://app.example/callback")
    ///     .await?
    ///     .with_policies(Policies::default().with_default(policy));
    /// let index = MemoryIndex::default();
    /// let core = rp.core(index.clone());
    /// let store = OidcSessionStore::new(index).with_core(core.clone()).with_policies(rp.policies().clone());
    /// let app: axum::Router = axum::Router::new()
    ///     .layer(rp.revalidation(core).layer::<tower_sessions::Session>()) // inside the session layer
    ///     .layer(SessionManagerLayer::new(store));
    /// # Ok(()) }
    /// ```
    pub fn revalidation<I: SessionIndex + RecordStore>(&self, core: Core<I>) -> Revalidation<I, H> {
        Revalidation {
            shared: Arc::new(Shared {
                rp: self.clone(),
                core,
            }),
        }
    }
}

impl<I, H> Revalidation<I, H>
where
    I: SessionIndex + RecordStore,
    H: for<'c> AsyncHttpClient<'c, Future: Send, Error: Send + Sync>
        + Clone
        + Send
        + Sync
        + 'static,
{
    fn policies(&self) -> &Policies {
        self.shared.rp.policies()
    }

    /// Check one request's session against its policy, confirming access at the OP if due.
    pub async fn check(&self, session: &impl SessionAccess) -> Result<Checked, RpError> {
        if !self.policies().checks_requests() {
            return Ok(Checked::Pass);
        }
        let value = match session.get_value(CHECK_KEY).await? {
            Some(value) => value,
            None => match Login::from_session(session).await? {
                // A login recorded before this check existed: last confirmed at login.
                Some(login) => {
                    let facts = CheckFacts {
                        issuer: login.issuer.as_str().into(),
                        sub: login.sub.as_str().into(),
                        policy: login.policy.as_deref().map(Into::into),
                        auth_time: login.auth_time,
                        checked_at: login.logged_in_at,
                    };
                    let value =
                        serde_json::to_value(&facts).map_err(|e| RpError::Login(e.to_string()))?;
                    session.insert_value(CHECK_KEY, value.clone()).await?;
                    value
                }
                None => return Ok(Checked::Pass),
            },
        };
        let Ok(facts) = CheckFacts::deserialize(&value) else {
            return self.end(session, "its policy record cannot be read").await;
        };
        let policy = *self.policies().get(facts.policy.as_deref(), &facts.issuer);
        if !policy.checks_requests() {
            return Ok(Checked::Pass);
        }
        let now = unix_now();
        if let Some(max) = policy.max_auth_age
            && facts.auth_time.saturating_add(max.as_secs()) < now
        {
            session.flush().await?;
            session
                .insert_value(REAUTH_KEY, max.as_secs().into())
                .await?;
            return Ok(Checked::Reauthenticate);
        }
        let Some(after) = policy.revalidate_after else {
            return Ok(Checked::Pass);
        };
        // Milliseconds, so that the bound holds to the decision, not to the second.
        let now_ms = unix_now_ms();
        let due_ms = facts
            .checked_at
            .saturating_mul(1000)
            .saturating_add(millis(after));
        if now_ms < due_ms {
            return Ok(Checked::Pass);
        }
        // Named after the confirmation it would replace: once one instance confirmed, the next
        // due check takes a new lease; while the OP does not answer, it is asked again once per
        // lease (every 10 s).
        let id = session.id().unwrap_or_default();
        let lease = format!("revalidate:{id}:{}", facts.checked_at);
        let index = self.shared.core.index();
        let lease_error =
            |e: crate::index::StoreError| RpError::Provider(format!("revalidation lease: {e}"));
        if !index
            .claim(&facts.issuer, &lease, LEASE)
            .await
            .map_err(lease_error)?
        {
            // Another request is asking the OP right now: serve meanwhile while the grace
            // lasts; past it, only what it confirms.
            if within_grace(&policy, unix_now_ms(), due_ms) {
                return Ok(Checked::Pass);
            }
            return self
                .await_outcome(session, &facts.issuer, &id, facts.checked_at)
                .await;
        }
        let (issuer, sub) = (facts.issuer.into_owned(), facts.sub.into_owned());
        let found = self.confirm(session, &sub).await?;
        let outcome = match &found {
            Confirmation::Confirmed => Found::Confirmed,
            Confirmation::Refused(_) => Found::Ended,
            Confirmation::NoAnswer(_) => Found::NoAnswer,
        };
        index
            .claim(&issuer, &outcome.lease(&id, facts.checked_at), LEASE)
            .await
            .map_err(lease_error)?;
        match found {
            Confirmation::Confirmed => Ok(Checked::Confirmed),
            Confirmation::Refused(why) => {
                self.revoke_user(&policy, &issuer, &sub).await;
                Ok(Checked::Ended(why))
            }
            Confirmation::NoAnswer(why) => {
                tracing::warn!(%why, "the OP could not confirm a user's access");
                // Judged now, after the OP's answer or timeout: the wait counts.
                Ok(if within_grace(&policy, unix_now_ms(), due_ms) {
                    Checked::Pass
                } else {
                    Checked::Unavailable
                })
            }
        }
    }

    /// Wait for the outcome of the confirmation another request is making, up to its lease:
    /// served if the OP confirmed, ended if it refused, refused (`503`) if it could not answer
    /// or the holder vanished.
    async fn await_outcome(
        &self,
        session: &impl SessionAccess,
        issuer: &str,
        id: &str,
        checked_at: u64,
    ) -> Result<Checked, RpError> {
        let index = self.shared.core.index();
        let started = std::time::Instant::now();
        while started.elapsed() < LEASE {
            for found in Found::ALL {
                let done = index
                    .leased(issuer, &found.lease(id, checked_at))
                    .await
                    .map_err(|e| RpError::Provider(format!("revalidation lease: {e}")))?;
                if !done {
                    continue;
                }
                return match found {
                    Found::Confirmed => Ok(Checked::Pass),
                    Found::Ended => self.end(session, "the OP refused the user's access").await,
                    Found::NoAnswer => Ok(Checked::Unavailable),
                };
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(Checked::Unavailable)
    }

    /// Ask the OP: the refresh grant, or without a refresh token the userinfo endpoint.
    async fn confirm(
        &self,
        session: &impl SessionAccess,
        sub: &str,
    ) -> Result<Confirmation, RpError> {
        let rp = &self.shared.rp;
        match rp.refresh(session).await? {
            Refreshed::Refreshed => return Ok(Confirmation::Confirmed),
            Refreshed::LoggedOut => {
                return Ok(Confirmation::Refused(
                    "the OP refused the refresh token".into(),
                ));
            }
            Refreshed::Rejected(why) => return Ok(Confirmation::Refused(why)),
            Refreshed::Failed(why) => return Ok(Confirmation::NoAnswer(why)),
            Refreshed::NothingToRefresh => {}
        }
        let Some(login) = Login::from_session(session).await? else {
            return Ok(Confirmation::Refused("the session holds no login".into()));
        };
        let Some(token) = login.access_token.as_ref() else {
            self.end(session, "no token to confirm access with").await?;
            return Ok(Confirmation::Refused(
                "no token to confirm access with".into(),
            ));
        };
        let request = match rp.client().user_info(
            AccessToken::new(token.expose().to_owned()),
            Some(SubjectIdentifier::new(sub.to_owned())),
        ) {
            Ok(request) => request,
            Err(_) => {
                self.end(
                    session,
                    "no refresh token, and the OP has no userinfo endpoint",
                )
                .await?;
                return Ok(Confirmation::Refused(
                    "no refresh token, and the OP has no userinfo endpoint".into(),
                ));
            }
        };
        let answer: Result<CoreUserInfoClaims, _> = request
            .request_async::<EmptyAdditionalClaims, _, CoreGenderClaim>(rp.http())
            .await;
        match answer {
            Ok(_) => {
                login.update_in(session).await?;
                Ok(Confirmation::Confirmed)
            }
            Err(openidconnect::UserInfoError::Response(status, _, _))
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN =>
            {
                session.flush().await?;
                Ok(Confirmation::Refused(
                    "the OP refused the access token".into(),
                ))
            }
            Err(openidconnect::UserInfoError::ClaimsVerification(_)) => {
                session.flush().await?;
                Ok(Confirmation::Refused("userinfo names another user".into()))
            }
            Err(error) => Ok(Confirmation::NoAnswer(format!("userinfo: {error}"))),
        }
    }

    async fn end(&self, session: &impl SessionAccess, why: &str) -> Result<Checked, RpError> {
        session.flush().await?;
        Ok(Checked::Ended(why.to_owned()))
    }

    /// With [`SessionPolicy::revoke_user_for`], log the user out everywhere and refuse their
    /// access tokens, through the core as every revocation: the revalidation is a sender
    /// scoped to the one user.
    async fn revoke_user(&self, policy: &SessionPolicy, issuer: &str, sub: &str) {
        if policy.revoke_user_for.is_none() {
            return;
        }
        let sender = Sender::new("revalidation", "", Scope::user(issuer, sub));
        let revoke = Action::RevokeUser {
            issuer: issuer.to_owned(),
            sub: sub.to_owned(),
        };
        if let Err(error) = self
            .shared
            .core
            .apply(Event::new(sender, vec![revoke]))
            .await
        {
            tracing::error!(%error, "a user the OP refused could not be logged out everywhere");
        }
    }

    /// A tower layer that checks every request's session (put it inside the session layer):
    /// a session the check ends reaches the handler without a login; [`Checked::Unavailable`]
    /// answers `503` with `Retry-After`. `T` is the application's tower-sessions `Session`
    /// (0.14 or 0.15): `revalidation.layer::<Session>()`.
    pub fn layer<T: SessionAccess + Clone + 'static>(&self) -> SessionLayer<Self, T> {
        SessionLayer::new(self.clone())
    }
}

impl<I, H> Sealed for Revalidation<I, H> {}

impl<I, H> PerRequest for Revalidation<I, H>
where
    I: SessionIndex + RecordStore,
    H: for<'c> AsyncHttpClient<'c, Future: Send, Error: Send + Sync>
        + Clone
        + Send
        + Sync
        + 'static,
{
    async fn before<T: SessionAccess>(
        &self,
        session: &T,
        _request: &Parts,
    ) -> Option<Response<Body>> {
        match self.check(session).await {
            Ok(Checked::Unavailable) => Some(unavailable(
                "your access cannot be confirmed right now; try again shortly",
            )),
            Ok(Checked::Ended(why)) => {
                tracing::info!(%why, "session ended by revalidation");
                None
            }
            Ok(_) => None,
            Err(error) => {
                tracing::error!(%error, "a session's policy could not be checked");
                Some(unavailable(
                    "the session cannot be checked right now; try again shortly",
                ))
            }
        }
    }
}

enum Confirmation {
    Confirmed,
    Refused(String),
    NoAnswer(String),
}

/// Whether a session due at `due_ms` may still be served unconfirmed at `now_ms`: always with
/// `unreachable = "open"`, until the grace is over with `"closed"`.
fn within_grace(policy: &SessionPolicy, now_ms: u64, due_ms: u64) -> bool {
    match policy.unreachable {
        Unreachable::ClosedAfter(grace) => now_ms < due_ms.saturating_add(millis(grace)),
        Unreachable::Open => true,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unavailable(message: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
