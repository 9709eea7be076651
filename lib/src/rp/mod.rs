//! The logout button: revoke the refresh token at the OP, end the local session and its index
//! entries, and send the browser to the OP's `end_session_endpoint` (RP-Initiated Logout 1.0).
//!
//! [`logout`] does all three in one call. The local session always ends, even when the OP cannot
//! revoke the token right now: a user who pressed "log out" must be logged out here. The
//! revocation is then retried in the background (honouring `Retry-After`), and the token also
//! dies with the OP session that the redirect ends, or when it expires.

mod end_session;
mod refresh;
mod revocation;

use std::sync::Arc;

use secrecy::SecretString;
use tower_sessions_core::Session;

pub use end_session::end_session_url;
pub use refresh::{Refreshed, refresh};
pub use revocation::{RefreshTokenRevocation, Revocation, RevocationReport, revoke_refresh_token};

use crate::provider::Provider;
use crate::session_store::Login;
use crate::sys::{RandomUnavailable, random_id, secrets_equal};

/// The session key that holds the `state` of a logout in progress.
pub const LOGOUT_STATE_KEY: &str = "oidc_logout.logout_state";

/// How the application is registered at the OP. Build it with [`Client::new`].
#[derive(Clone)]
#[non_exhaustive]
pub struct Client {
    /// The client id.
    pub id: String,
    /// The client secret (`client_secret_basic`); `None` for a public client.
    pub secret: Option<SecretString>,
    /// Where the OP sends the browser back after logout; must be registered at the OP.
    pub post_logout_redirect_uri: Option<String>,
}

impl Client {
    /// A public client (no secret) without a post-logout redirect.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: None,
            post_logout_redirect_uri: None,
        }
    }

    /// The client secret, for `client_secret_basic`.
    #[must_use]
    pub fn with_secret(mut self, secret: Option<SecretString>) -> Self {
        self.secret = secret;
        self
    }

    /// Where the OP sends the browser back after logout (registered at the OP).
    #[must_use]
    pub fn with_post_logout_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.post_logout_redirect_uri = Some(uri.into());
        self
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("post_logout_redirect_uri", &self.post_logout_redirect_uri)
            .finish()
    }
}

/// Why the logout button could not do its job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpError {
    /// The session could not be read or ended.
    #[error("session: {0}")]
    Session(#[from] tower_sessions_core::session::Error),
    /// Randomness for `state` was not available.
    #[error("cannot generate state: {0}")]
    Random(#[from] RandomUnavailable),
}

/// What the logout button did; `redirect` is where to send the browser.
#[derive(Debug)]
pub struct LoggedOut {
    /// The OP's end-session URL, or `post_logout_redirect_uri` when the OP has none, or `None`
    /// when there is neither.
    pub redirect: Option<String>,
    /// The outcome of revoking the refresh token (`None` when the session held none).
    pub revocation: Option<Revocation>,
}

/// The whole logout button: revoke, end the local session, build the redirect.
pub async fn logout(
    session: &Session,
    provider: &Arc<Provider>,
    client: &Client,
) -> Result<LoggedOut, RpError> {
    let login = Login::from_session(session).await?;
    let revocation = match login.as_ref().and_then(|l| l.refresh_token.clone()) {
        None => None,
        Some(token) => {
            let outcome = revoke_refresh_token(provider, client, token.expose()).await;
            if let Revocation::Retry { .. } = outcome {
                revocation::retry_in_background(Arc::clone(provider), client.clone(), token);
            }
            Some(outcome)
        }
    };
    // Ends the record and, through the session store, its index entry.
    session.flush().await?;
    let redirect = match provider.end_session_endpoint() {
        Some(endpoint) => {
            let state = random_id(16)?;
            session.insert(LOGOUT_STATE_KEY, &state).await?;
            let id_token = login
                .as_ref()
                .and_then(|l| l.id_token.as_ref())
                .map(|t| t.expose());
            Some(end_session_url(endpoint, id_token, client, &state).to_string())
        }
        None => client.post_logout_redirect_uri.clone(),
    };
    Ok(LoggedOut {
        redirect,
        revocation,
    })
}

/// When the browser comes back to `post_logout_redirect_uri`: whether its `state` is the one
/// this session sent. The stored state is used up either way.
pub async fn check_logout_state(session: &Session, state: Option<&str>) -> Result<bool, RpError> {
    let expected: Option<String> = session.remove(LOGOUT_STATE_KEY).await?;
    Ok(match (expected, state) {
        (Some(expected), Some(got)) => secrets_equal(expected.as_bytes(), got.as_bytes()),
        _ => false,
    })
}
