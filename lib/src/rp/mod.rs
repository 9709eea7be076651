//! The relying party's side of logging out: the logout button, keeping tokens fresh, and
//! revoking refresh tokens.
//!
//! - [`RelyingParty`] (feature `openidconnect`) is the application's openidconnect client with
//!   its provider metadata: it turns a verified login into a [`Login`](crate::Login) for the
//!   session store, and is the logout button (revoke the refresh token, end the local session
//!   and its index entry, send the browser to the OP's `end_session_endpoint`) and the token
//!   refresh (which validates a refreshed ID token and ends the session when the OP says no).
//!   Every request to the OP is openidconnect's; the HTTP client is this crate's reqwest
//!   ([`HttpClient`]) or any other that openidconnect accepts.
//! - [`Revalidation`] (feature `openidconnect`) checks each request's session against its
//!   [`SessionPolicy`](crate::session_store::SessionPolicy): it confirms at the OP that the user
//!   still has access when `revalidate_after` says so, and sends a session whose authentication
//!   is too old back to log in.
//! - [`RefreshTokenRevocation`] is the receiver's: it revokes (RFC 7009) the refresh tokens of
//!   the sessions a back-channel logout ended, from the session store's records.

#[cfg(feature = "openidconnect")]
mod http;
#[cfg(feature = "openidconnect")]
mod relying_party;
#[cfg(feature = "openidconnect")]
mod revalidate;
mod revocation;

use secrecy::SecretString;

#[cfg(feature = "openidconnect")]
#[doc(hidden)]
pub use http::{HttpClient, HttpError};
#[cfg(feature = "openidconnect")]
pub use relying_party::{
    Callback, LoggedOut, Refreshed, RelyingParty, RpError, check_logout_state, logged_out,
};
// openidconnect's types as this client uses them, and the session keys of its steps.
#[cfg(feature = "openidconnect")]
#[doc(hidden)]
pub use relying_party::{
    IdToken, IdTokenClaims, LOGIN_PENDING_KEY, LOGOUT_STATE_KEY, OidcClient, ProviderMetadata,
    REAUTH_KEY, SidClaim, TokenResponse,
};
#[cfg(feature = "openidconnect")]
pub use revalidate::{Checked, Revalidation};
#[doc(hidden)]
pub use revocation::RevocationReport;
#[doc(hidden)]
pub use revocation::revoke_refresh_token;
pub use revocation::{RefreshTokenRevocation, Revocation};

/// How an application is registered at the OP, for the receiver to revoke its refresh tokens.
/// Build it with [`Client::new`].
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
