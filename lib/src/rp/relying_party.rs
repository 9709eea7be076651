//! The application's OpenID Connect client, made logout-aware: login into the session store,
//! the logout button, and token refresh, each on openidconnect.
//!
//! (See [`RelyingParty`].)

use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AsyncHttpClient, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndSessionUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenVerifier, IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse as _,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::HttpClient;
use super::revocation::{Revocation, retry_until_done};
use crate::Core;
use crate::index::{RecordStore, SessionIndex};
use crate::inputs::backchannel::Receiver;
use crate::logout_token::Policy;
use crate::provider::{Provider, ProviderSettings};
use crate::session_store::{
    Login, Policies, PolicyInput, SessionAccess, SessionError, TokenKeys, TokenSecret,
};
use crate::sys::{RandomUnavailable, random_id, secrets_equal, unix_now};

/// The session key that holds the `state` of a logout in progress.
pub const LOGOUT_STATE_KEY: &str = "oidc_logout.logout_state";

/// The session key that holds a login in progress (`state`, `nonce`, PKCE verifier).
pub const LOGIN_PENDING_KEY: &str = "oidc_logout.pending_login";

/// The session data key that asks the next login to authenticate the user afresh: the
/// `max_age` (seconds) its authorization request carries. Written when a session's policy
/// found its authentication too old.
pub const REAUTH_KEY: &str = "oidc_logout.reauth";

/// The `sid` claim (OpenID Connect Back-Channel and Front-Channel Logout) as an openidconnect
/// additional claim, so that the OP session of a login is typed, not dug out of the payload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidClaim {
    /// The OP session, when the OP sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl AdditionalClaims for SidClaim {}

/// openidconnect's provider metadata with RP-Initiated Logout's `end_session_endpoint`.
pub use openidconnect::ProviderMetadataWithLogout as ProviderMetadata;

/// ID token claims with `sid`.
pub type IdTokenClaims = openidconnect::IdTokenClaims<SidClaim, CoreGenderClaim>;

/// An ID token with `sid`.
pub type IdToken = openidconnect::IdToken<
    SidClaim,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// A token response whose ID token carries `sid`.
pub type TokenResponse = StandardTokenResponse<
    openidconnect::IdTokenFields<
        SidClaim,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

/// openidconnect's client as `from_provider_metadata` builds it, with `sid` in its ID tokens.
pub type OidcClient = openidconnect::Client<
    SidClaim,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a step of the relying party failed. Messages never hold tokens or secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpError {
    /// The session could not be read or written.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Randomness for `state` was not available.
    #[error("cannot generate state: {0}")]
    Random(#[from] RandomUnavailable),
    /// The OP's metadata or keys could not be loaded, or do not fit this client.
    #[error("OP: {0}")]
    Provider(String),
    /// A login could not be completed: no login in progress, a `state` that does not match, a
    /// refused code, an invalid ID token.
    #[error("login: {0}")]
    Login(String),
}

/// The answer to a browser whose login, logout or refresh failed: short, naming no internals
/// (the detail goes to the log, which holds no token either).
impl axum::response::IntoResponse for RpError {
    fn into_response(self) -> axum::response::Response {
        use crate::session_store::plain;
        use axum::http::StatusCode;
        match self {
            Self::Session(error) => axum::response::IntoResponse::into_response(error),
            Self::Random(_) => {
                tracing::error!(error = %self, "a login step failed");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "server error")
            }
            Self::Provider(_) => {
                tracing::warn!(error = %self, "a login step failed");
                plain(
                    StatusCode::BAD_GATEWAY,
                    "the identity provider cannot be reached; try again",
                )
            }
            // The reason is the crate's own words (an OP's are made printable), in plain text:
            // what the user needs to start again.
            Self::Login(reason) => {
                tracing::info!(%reason, "a login was refused");
                let mut response = plain(StatusCode::BAD_REQUEST, "");
                *response.body_mut() =
                    axum::body::Body::from(format!("the login failed: {reason}; start again"));
                response
            }
        }
    }
}

/// What the OP sends back to the redirect URI: a query to deserialize and hand to
/// [`RelyingParty::finish_login`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The `state` the login started with.
    pub state: Option<String>,
    /// The OP's refusal, if it refused.
    pub error: Option<String>,
}

/// What the logout button did; `redirect` is where to send the browser.
#[derive(Debug)]
#[non_exhaustive]
pub struct LoggedOut {
    /// The OP's end-session URL, or `post_logout_redirect_uri` when the OP has none, or `None`
    /// when there is neither.
    pub redirect: Option<String>,
    /// The outcome of revoking the refresh token (`None` when the session held none).
    pub revocation: Option<Revocation>,
}

/// The outcome of [`RelyingParty::refresh`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refreshed {
    /// New tokens are in the session.
    Refreshed,
    /// The OP refused the refresh token (`invalid_grant`: the user was logged out or disabled):
    /// the session was ended.
    LoggedOut,
    /// The OP sent an ID token that is invalid or names another user or authentication: the
    /// session was ended.
    Rejected(String),
    /// The session holds no login or no refresh token; nothing was done.
    NothingToRefresh,
    /// The OP could not be asked (network, 5xx, other errors); the session is unchanged.
    Failed(String),
}

#[derive(Serialize, Deserialize)]
struct PendingLogin {
    state: String,
    nonce: String,
    pkce_verifier: String,
    /// When the login began (seconds since the epoch): the latest the user can have been
    /// authenticated for it, when the OP does not say.
    #[serde(default)]
    begun_at: u64,
    /// The `max_age` the authorization request carried (seconds), if any.
    #[serde(default)]
    max_age: Option<u64>,
}

/// The application's OpenID Connect client with its provider's metadata and keys. Cheap to
/// clone.
///
/// One discovery ([`RelyingParty::discover`]) gives everything: openidconnect's provider metadata
/// and client for the application, and the [`Provider`] (keys, with rotation) that the
/// back-channel receiver verifies logout tokens with. ID tokens are verified by openidconnect
/// against the provider's current keys, fetched again (once per cooldown) when a token names a
/// key the cache does not hold.
///
/// - **Login**: [`begin_login`](RelyingParty::begin_login) and
///   [`finish_login`](RelyingParty::finish_login) run the authorization code flow with PKCE,
///   `state` and `nonce`, and record the [`Login`] (with `sid`, a typed [`SidClaim`]) in the
///   session; [`login`](RelyingParty::login) does the last step for an application that runs its
///   own flow.
/// - **Logout button**: [`logout`](RelyingParty::logout) revokes the refresh token (RFC 7009,
///   retried in the background when the OP cannot answer now), ends the local session — always,
///   even when the OP is down: a user who pressed "log out" is logged out here — and returns the
///   OP's end-session URL (RP-Initiated Logout 1.0) with `id_token_hint` and a `state` that
///   [`check_logout_state`] verifies when the browser comes back.
/// - **Refresh**: [`refresh`](RelyingParty::refresh) exchanges the refresh token. A refreshed ID
///   token is kept only if it is valid (signature, `iss`, `aud`, expiry) and names the same user
///   and authentication as the session's (OpenID Connect Core §12.2: `sub`, `auth_time` where
///   present, `nonce` if present); otherwise, or when the OP answers `invalid_grant`, the session
///   ends.
#[derive(Clone)]
pub struct RelyingParty<H = HttpClient> {
    inner: Arc<Inner<H>>,
}

struct Inner<H> {
    client: OidcClient,
    /// Kept for the receiver's refresh-token revocation, which authenticates as this client.
    client_secret: Option<SecretString>,
    metadata: ProviderMetadata,
    provider: Arc<Provider>,
    http: H,
    post_logout_redirect_uri: Option<PostLogoutRedirectUrl>,
    /// What chooses each login's session policy.
    policies: Arc<Policies>,
    /// What seals the tokens in the session store, and opens them for revocation.
    token_keys: Option<TokenKeys>,
}

impl<H> std::fmt::Debug for RelyingParty<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("issuer", &self.inner.provider.issuer())
            .field("client_id", &self.inner.client.client_id().as_str())
            .finish_non_exhaustive()
    }
}

fn provider_error(error: impl std::fmt::Display) -> RpError {
    RpError::Provider(error.to_string())
}

impl RelyingParty<HttpClient> {
    /// Discover the OP once and build everything from that: `client_id`, its secret (`None` for a
    /// public client) and the redirect URI registered at the OP. The OP must be `https`, or
    /// `http` on a loopback address (a developer's machine); [`discover_with`](Self::discover_with)
    /// takes other settings.
    pub async fn discover(
        issuer: &str,
        client_id: &str,
        client_secret: Option<SecretString>,
        redirect_uri: &str,
    ) -> Result<Self, RpError> {
        let settings = ProviderSettings::default();
        Self::discover_with(issuer, client_id, client_secret, redirect_uri, settings).await
    }

    /// [`discover`](Self::discover) with these provider settings (key cache, plain `http`).
    pub async fn discover_with(
        issuer: &str,
        client_id: &str,
        client_secret: Option<SecretString>,
        redirect_uri: &str,
        settings: ProviderSettings,
    ) -> Result<Self, RpError> {
        let http = HttpClient::new().map_err(provider_error)?;
        let (provider, document) =
            Provider::discover_with_document(issuer, http.reqwest().clone(), settings)
                .await
                .map_err(provider_error)?;
        let mut metadata: ProviderMetadata = serde_json::from_value(document)
            .map_err(|e| RpError::Provider(format!("discovery document: {e}")))?;
        metadata = metadata.set_jwks(current_keys(&provider)?);
        let client = client_for(&metadata, client_id, client_secret.clone(), redirect_uri)?;
        Ok(Self::new(client, client_secret, metadata, provider, http))
    }
}

/// openidconnect's client for `metadata`.
fn client_for(
    metadata: &ProviderMetadata,
    client_id: &str,
    client_secret: Option<SecretString>,
    redirect_uri: &str,
) -> Result<OidcClient, RpError> {
    Ok(openidconnect::Client::from_provider_metadata(
        metadata.clone(),
        ClientId::new(client_id.to_owned()),
        client_secret.map(|s| ClientSecret::new(s.expose_secret().to_owned())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(provider_error)?))
}

/// The provider's keys as openidconnect reads them.
fn current_keys(provider: &Arc<Provider>) -> Result<CoreJsonWebKeySet, RpError> {
    serde_json::from_value(provider.keys().document().clone())
        .map_err(|e| RpError::Provider(format!("JWKS: {e}")))
}

impl<H> RelyingParty<H>
where
    H: for<'c> AsyncHttpClient<'c, Future: Send, Error: Send + Sync>
        + Clone
        + Send
        + Sync
        + 'static,
{
    /// The application's own openidconnect `client` (and its secret, `None` for a public
    /// client) and `metadata` (from one discovery), the receiver's [`Provider`] of the same
    /// issuer (for keys), and the HTTP client for the OP.
    pub fn new(
        client: OidcClient,
        client_secret: Option<SecretString>,
        metadata: ProviderMetadata,
        provider: Arc<Provider>,
        http: H,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                client_secret,
                metadata,
                provider,
                http,
                post_logout_redirect_uri: None,
                policies: Arc::default(),
                token_keys: None,
            }),
        }
    }

    /// Where the OP sends the browser back after logout (registered at the OP).
    pub fn with_post_logout_redirect_uri(self, uri: &str) -> Result<Self, RpError> {
        let uri = PostLogoutRedirectUrl::new(uri.to_owned()).map_err(provider_error)?;
        Ok(self.changed(|inner| inner.post_logout_redirect_uri = Some(uri)))
    }

    /// The session policies each login chooses from ([`Policies::choose`], recorded in the
    /// [`Login`]); give the session store and [`revalidation`](Self::revalidation) the same set.
    #[must_use]
    pub fn with_policies(self, policies: Policies) -> Self {
        self.changed(|inner| inner.policies = Arc::new(policies))
    }

    /// The session policies.
    pub fn policies(&self) -> &Policies {
        &self.inner.policies
    }

    /// The keys that seal the tokens kept in the session store ([`TokenKeys`]): the
    /// [`core`](Self::core)'s refresh-token revocation opens them with these. Give the session
    /// store the same ([`LogoutAware::with_token_keys`](crate::session_store::LogoutAware::with_token_keys)).
    #[must_use]
    pub fn with_token_keys(self, keys: TokenKeys) -> Self {
        self.changed(|inner| inner.token_keys = Some(keys))
    }

    /// The keys that seal the tokens kept in the session store, if any.
    pub fn token_keys(&self) -> Option<&TokenKeys> {
        self.inner.token_keys.as_ref()
    }

    fn changed(self, change: impl FnOnce(&mut Inner<H>)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            client: shared.client.clone(),
            client_secret: shared.client_secret.clone(),
            metadata: shared.metadata.clone(),
            provider: Arc::clone(&shared.provider),
            http: shared.http.clone(),
            post_logout_redirect_uri: shared.post_logout_redirect_uri.clone(),
            policies: Arc::clone(&shared.policies),
            token_keys: shared.token_keys.clone(),
        });
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// openidconnect's client.
    pub fn client(&self) -> &OidcClient {
        &self.inner.client
    }

    /// The provider metadata.
    pub fn metadata(&self) -> &ProviderMetadata {
        &self.inner.metadata
    }

    /// The issuer's keys and endpoints, to give the back-channel receiver.
    pub fn provider(&self) -> &Arc<Provider> {
        &self.inner.provider
    }

    /// The HTTP client used for the OP.
    pub fn http(&self) -> &H {
        &self.inner.http
    }

    fn client_id(&self) -> &str {
        self.inner.client.client_id().as_str()
    }

    /// The application's [`Core`] over `index` (the session store's backend): this client's
    /// issuer, with denylist markers of the default access-token lifetime, and the revocation
    /// of the refresh tokens held by every session it ends. Give the same core to the receiver,
    /// the session store ([`LogoutAware::with_core`](crate::session_store::LogoutAware::with_core)),
    /// [`OwnSessions`](crate::session_store::OwnSessions) and
    /// [`revalidation`](Self::revalidation): every way a session ends then runs the same rules.
    pub fn core<B: SessionIndex + RecordStore>(&self, index: B) -> Core<B> {
        let provider = &self.inner.provider;
        let mut revocation = super::RefreshTokenRevocation::new(index.clone())
            .with_issuer(Arc::clone(provider), vec![self.credentials()]);
        if let Some(keys) = &self.inner.token_keys {
            revocation = revocation.with_token_keys(keys.clone());
        }
        Core::builder(index)
            .issuer(provider.issuer())
            .after_logout(Arc::new(revocation))
            .build()
    }

    /// The back-channel logout receiver for this client's issuer, ending sessions through
    /// `core` ([`core`](Self::core)). Mount its [`into_router`](Receiver::into_router) in the
    /// application, at the back-channel logout URI registered at the OP.
    pub fn receiver<B: SessionIndex + RecordStore>(&self, core: Core<B>) -> Receiver<B> {
        let provider = Arc::clone(&self.inner.provider);
        let policy = Policy::new(provider.issuer(), self.client_id());
        Receiver::new(core).with_issuer(provider, policy)
    }

    /// A verifier for ID tokens signed with the key `token` names: the provider's keys, fetched
    /// again (once per cooldown) when none matches.
    async fn verifier(
        &self,
        token: &IdToken,
    ) -> Result<IdTokenVerifier<'_, CoreJsonWebKey>, RpError> {
        let (kid, alg) = header_of(&token.to_string());
        let provider = &self.inner.provider;
        let keys = match alg.as_deref().and_then(crate::jose::parse_algorithm) {
            Some(alg) => provider.keys_for(kid.as_deref(), alg).await,
            None => provider.keys(),
        };
        let jwks: CoreJsonWebKeySet = serde_json::from_value(keys.document().clone())
            .map_err(|e| RpError::Provider(format!("JWKS: {e}")))?;
        let issuer = IssuerUrl::new(provider.issuer().to_owned()).map_err(provider_error)?;
        Ok(IdTokenVerifier::new_public_client(
            ClientId::new(self.client_id().to_owned()),
            issuer,
            jwks,
        )
        .set_allowed_algs(ASYMMETRIC.iter().cloned()))
    }

    /// The [`Login`] of a token response from the OP's token endpoint: its ID token verified
    /// (signature with the provider's current keys, `iss`, `aud`, expiry, and `nonce`: the one
    /// the login started with), its `sid` read as a typed claim, its tokens kept for refresh and
    /// logout. Any openidconnect token response will do, whatever additional claims type the
    /// application's own client uses.
    ///
    /// The login's `auth_time` is the ID token's, or when the OP sends none its `iat`: a logout
    /// the OP issued between the authentication and the token would then miss this session. An
    /// application that knows when its login began should pass that to
    /// [`login_begun_at`](Self::login_begun_at) instead, as [`finish_login`](Self::finish_login)
    /// does.
    pub async fn login<T, AC, GC, JE, JS>(
        &self,
        tokens: &T,
        nonce: &Nonce,
    ) -> Result<Login, RpError>
    where
        T: openidconnect::TokenResponse<AC, GC, JE, JS>,
        AC: AdditionalClaims,
        GC: openidconnect::GenderClaim,
        JE: openidconnect::JweContentEncryptionAlgorithm<KeyType = JS::KeyType>,
        JS: openidconnect::JwsSigningAlgorithm,
    {
        self.login_begun_at(tokens, nonce, u64::MAX).await
    }

    /// [`login`](Self::login) for a login that began at `begun_at` (seconds since the epoch,
    /// when the application sent the browser to the OP). When the OP sends no `auth_time`, the
    /// session counts as authenticated at the earlier of `begun_at` and the token's `iat`, so
    /// that every logout of the user the OP issued after the login began covers it.
    pub async fn login_begun_at<T, AC, GC, JE, JS>(
        &self,
        tokens: &T,
        nonce: &Nonce,
        begun_at: u64,
    ) -> Result<Login, RpError>
    where
        T: openidconnect::TokenResponse<AC, GC, JE, JS>,
        AC: AdditionalClaims,
        GC: openidconnect::GenderClaim,
        JE: openidconnect::JweContentEncryptionAlgorithm<KeyType = JS::KeyType>,
        JS: openidconnect::JwsSigningAlgorithm,
    {
        let raw = tokens
            .id_token()
            .ok_or_else(|| RpError::Login("the OP sent no ID token".into()))?
            .to_string();
        let id_token: IdToken = raw
            .parse()
            .map_err(|e| RpError::Login(format!("the ID token cannot be read: {e}")))?;
        let verifier = self.verifier(&id_token).await?;
        let claims = id_token
            .claims(&verifier, nonce)
            .map_err(|e| RpError::Login(format!("the ID token is invalid: {e}")))?;
        let auth_time = match claims.auth_time() {
            Some(auth_time) => u64::try_from(auth_time.timestamp()).unwrap_or(0),
            None => u64::try_from(claims.issue_time().timestamp())
                .unwrap_or(0)
                .min(begun_at),
        };
        let sub = claims.subject().to_string();
        if sub.is_empty() {
            return Err(RpError::Login(
                "the ID token names no user (empty sub)".into(),
            ));
        }
        let issuer = claims.issuer().to_string();
        let (policy, customer) = match payload_of(&raw) {
            Value::Object(all) => {
                let input = PolicyInput {
                    issuer: &issuer,
                    client_id: Some(self.client_id()),
                    claims: &all,
                };
                let policies = &self.inner.policies;
                (policies.choose(&input), policies.customer_for(&input))
            }
            _ => (None, None),
        };
        Ok(Login {
            issuer,
            sub,
            policy,
            customer,
            client_id: Some(self.client_id().to_owned()),
            // `"sid": ""` names no OP session.
            sid: claims
                .additional_claims()
                .sid
                .clone()
                .filter(|sid| !sid.is_empty()),
            auth_time,
            logged_in_at: unix_now(),
            id_token: Some(TokenSecret::new(raw)),
            refresh_token: tokens
                .refresh_token()
                .map(|t| TokenSecret::new(t.secret().clone())),
            access_token: Some(TokenSecret::new(tokens.access_token().secret().clone())),
        })
    }

    /// Start a login: remember `state`, `nonce` and the PKCE verifier in the session and return
    /// the OP's authorization URL to send the browser to. `scopes` come on top of `openid`
    /// (`offline_access` for a refresh token).
    ///
    /// ```no_run
    /// use axum::extract::{Query, State};
    /// use axum::response::Redirect;
    /// use oidc_logout::rp::{Callback, RelyingParty, RpError};
    /// use tower_sessions::Session;
    ///
    /// async fn login(State(rp): State<RelyingParty>, session: Session) -> Result<Redirect, RpError> {
    ///     Ok(Redirect::to(&rp.begin_login(&session, &["offline_access"]).await?))
    /// }
    ///
    /// // The redirect URI: the login is recorded in the session (and the index) on return.
    /// async fn callback(
    ///     State(rp): State<RelyingParty>,
    ///     session: Session,
    ///     Query(back): Query<Callback>,
    /// ) -> Result<Redirect, RpError> {
    ///     rp.finish_login(&session, &back).await?;
    ///     Ok(Redirect::to("/"))
    /// }
    /// ```
    pub async fn begin_login(
        &self,
        session: &impl SessionAccess,
        scopes: &[&str],
    ) -> Result<String, RpError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        // A session its policy sent back to log in again (authentication too old) asks the OP
        // to authenticate the user afresh.
        let max_age = session
            .remove_value(REAUTH_KEY)
            .await?
            .and_then(|v| v.as_u64());
        let mut request = self
            .inner
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(scopes.iter().map(|s| Scope::new((*s).to_owned())))
            .set_pkce_challenge(challenge);
        if let Some(max_age) = max_age {
            request = request.set_max_age(Duration::from_secs(max_age));
        }
        let (url, state, nonce) = request.url();
        let pending = PendingLogin {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            begun_at: unix_now(),
            max_age,
        };
        let value = serde_json::to_value(pending).map_err(|e| RpError::Login(e.to_string()))?;
        session.insert_value(LOGIN_PENDING_KEY, value).await?;
        Ok(url.to_string())
    }

    /// Finish a login at the redirect URI: check `state`, exchange the code (with the PKCE
    /// verifier), verify the ID token, and record the [`Login`] in the session (rotating its
    /// id). The login in progress is used up either way.
    pub async fn finish_login(
        &self,
        session: &impl SessionAccess,
        callback: &Callback,
    ) -> Result<Login, RpError> {
        let pending: PendingLogin = session
            .remove_value(LOGIN_PENDING_KEY)
            .await?
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| RpError::Login("no login in progress in this session".into()))?;
        if let Some(error) = &callback.error {
            return Err(RpError::Login(format!(
                "the OP refused the login ({})",
                printable(error)
            )));
        }
        let state_matches = callback
            .state
            .as_deref()
            .is_some_and(|got| secrets_equal(got.as_bytes(), pending.state.as_bytes()));
        if !state_matches {
            return Err(RpError::Login("state does not match this login".into()));
        }
        let code = callback
            .code
            .clone()
            .ok_or_else(|| RpError::Login("no authorization code".into()))?;
        let tokens = self
            .inner
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(provider_error)?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
            .request_async(&self.inner.http)
            .await
            .map_err(|e| RpError::Login(format!("the code was refused: {}", describe(&e))))?;
        let login = self
            .login_begun_at(&tokens, &Nonce::new(pending.nonce), pending.begun_at)
            .await?;
        // OpenID Connect Core §3.1.2.1: with max_age, the authentication must be that recent
        // (a minute allowed for clocks).
        if let Some(max_age) = pending.max_age
            && login.auth_time.saturating_add(max_age).saturating_add(60) < unix_now()
        {
            return Err(RpError::Login(
                "the OP did not authenticate the user again (auth_time older than max_age)".into(),
            ));
        }
        login.save_to(session).await?;
        Ok(login)
    }

    /// Revoke a refresh token at the OP's `revocation_endpoint` (RFC 7009), authenticated as
    /// this client. This is the crate's own request, the one the receiver uses too, rather than
    /// openidconnect's `revoke_token`: that one refuses any endpoint that is not `https` (so no
    /// OP on a developer's loopback) and does not say when to retry.
    pub async fn revoke(&self, token: &str) -> Revocation {
        super::revoke_refresh_token(&self.inner.provider, &self.credentials(), token).await
    }

    /// The client as the receiver's refresh-token revocation authenticates it.
    fn credentials(&self) -> super::Client {
        super::Client::new(self.client_id()).with_secret(self.inner.client_secret.clone())
    }

    /// The logout button: revoke the refresh token, end the local session (and through the
    /// store its index entry), and say where to send the browser.
    ///
    /// ```no_run
    /// use axum::extract::{Query, State};
    /// use axum::response::Redirect;
    /// use oidc_logout::rp::{RelyingParty, RpError, check_logout_state};
    /// use tower_sessions::Session;
    ///
    /// // The logout button (a POST): the refresh token revoked, the session ended everywhere, the
    /// // browser sent to the OP's end-session endpoint, and back to /logged-out.
    /// async fn logout(State(rp): State<RelyingParty>, session: Session) -> Result<Redirect, RpError> {
    ///     let done = rp.logout(&session).await?;
    ///     Ok(Redirect::to(done.redirect.as_deref().unwrap_or("/")))
    /// }
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Back {
    ///     state: Option<String>,
    /// }
    ///
    /// async fn logged_out(session: Session, Query(back): Query<Back>) -> Result<&'static str, RpError> {
    ///     Ok(match check_logout_state(&session, back.state.as_deref()).await? {
    ///         true => "You are logged out.",
    ///         false => "Unexpected logout response.",
    ///     })
    /// }
    /// # async fn build(rp: RelyingParty) -> Result<(), RpError> {
    /// // `with_post_logout_redirect_uri` names the return registered at the OP.
    /// let rp = rp.with_post_logout_redirect_uri("https://app.example.com/logged-out")?;
    /// # let _ = rp; Ok(()) }
    /// ```
    pub async fn logout(&self, session: &impl SessionAccess) -> Result<LoggedOut, RpError> {
        let login = Login::from_session(session).await?;
        let revocation = match login.as_ref().and_then(|l| l.refresh_token.clone()) {
            None => None,
            Some(token) => {
                let outcome = self.revoke(token.expose()).await;
                if let Revocation::Retry { .. } = outcome {
                    let this = self.clone();
                    retry_until_done(move || {
                        let (this, token) = (this.clone(), token.clone());
                        async move { this.revoke(token.expose()).await }
                    });
                }
                Some(outcome)
            }
        };
        session.flush().await?;
        let endpoint = self
            .inner
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone();
        let redirect = match endpoint {
            Some(endpoint) => Some(
                self.end_session_url(session, endpoint, login.as_ref())
                    .await?,
            ),
            None => self
                .inner
                .post_logout_redirect_uri
                .as_ref()
                .map(|u| u.to_string()),
        };
        Ok(LoggedOut {
            redirect,
            revocation,
        })
    }

    async fn end_session_url(
        &self,
        session: &impl SessionAccess,
        endpoint: EndSessionUrl,
        login: Option<&Login>,
    ) -> Result<String, RpError> {
        let state = random_id(16)?;
        session
            .insert_value(LOGOUT_STATE_KEY, Value::String(state.clone()))
            .await?;
        let mut request = LogoutRequest::from(endpoint)
            .set_client_id(ClientId::new(self.client_id().to_owned()))
            .set_state(CsrfToken::new(state));
        let hint = login
            .and_then(|l| l.id_token.as_ref())
            .and_then(|t| t.expose().parse::<IdToken>().ok());
        if let Some(hint) = &hint {
            request = request.set_id_token_hint(hint);
        }
        if let Some(uri) = &self.inner.post_logout_redirect_uri {
            request = request.set_post_logout_redirect_uri(uri.clone());
        }
        Ok(request.http_get_url().to_string())
    }

    /// Exchange the session's refresh token. A refreshed ID token must be valid (signature,
    /// `iss`, `aud`, expiry) and name the same user and authentication as the login's original
    /// one (OpenID Connect Core §12.2: `sub`, `auth_time` where present, `nonce` if present);
    /// otherwise, or when the OP answers `invalid_grant`, the session ends. The session keeps
    /// the original ID token: every later refresh is compared with it, and it is the
    /// `id_token_hint` at logout (RP-Initiated Logout accepts an expired one).
    ///
    /// ```no_run
    /// use axum::extract::State;
    /// use axum::http::StatusCode;
    /// use oidc_logout::rp::{Refreshed, RelyingParty, RpError};
    /// use tower_sessions::Session;
    ///
    /// // New tokens before calling an API with the access token; a user the OP disabled is logged out.
    /// async fn renew(State(rp): State<RelyingParty>, session: Session) -> Result<StatusCode, RpError> {
    ///     Ok(match rp.refresh(&session).await? {
    ///         Refreshed::Refreshed => StatusCode::NO_CONTENT,
    ///         Refreshed::LoggedOut | Refreshed::Rejected(_) => StatusCode::UNAUTHORIZED,
    ///         _ => StatusCode::SERVICE_UNAVAILABLE,
    ///     })
    /// }
    /// ```
    pub async fn refresh(&self, session: &impl SessionAccess) -> Result<Refreshed, RpError> {
        let Some(mut login) = Login::from_session(session).await? else {
            return Ok(Refreshed::NothingToRefresh);
        };
        let Some(token) = login.refresh_token.clone() else {
            return Ok(Refreshed::NothingToRefresh);
        };
        let refresh_token = RefreshToken::new(token.expose().to_owned());
        let request = match self.inner.client.exchange_refresh_token(&refresh_token) {
            Ok(request) => request,
            Err(error) => return Ok(Refreshed::Failed(error.to_string())),
        };
        let tokens = match request.request_async(&self.inner.http).await {
            Ok(tokens) => tokens,
            Err(RequestTokenError::ServerResponse(refusal))
                if *refusal.error() == CoreErrorResponseType::InvalidGrant =>
            {
                session.flush().await?;
                return Ok(Refreshed::LoggedOut);
            }
            Err(other) => return Ok(Refreshed::Failed(describe(&other))),
        };
        if let Some(id_token) = tokens.id_token()
            && let Err(why) = self.same_authentication(id_token, &login).await
        {
            tracing::warn!(%why, "a refreshed ID token was rejected; ending the session");
            session.flush().await?;
            return Ok(Refreshed::Rejected(why));
        }
        login.access_token = Some(TokenSecret::new(tokens.access_token().secret().clone()));
        if let Some(t) = tokens.refresh_token() {
            login.refresh_token = Some(TokenSecret::new(t.secret().clone()));
        }
        login.update_in(session).await?;
        // The OP has used up the old refresh token: store the new one now, not at the end of a
        // request that may be cancelled or overwritten by a concurrent one's save.
        session.save().await?;
        Ok(Refreshed::Refreshed)
    }

    /// OpenID Connect Core §12.2: a refreshed ID token is valid, from the same issuer for the
    /// same client, and names the same user and authentication as the session's login.
    async fn same_authentication(&self, id_token: &IdToken, login: &Login) -> Result<(), String> {
        let original = login
            .id_token
            .as_ref()
            .map(|t| payload_of(t.expose()))
            .unwrap_or_default();
        let verifier = self.verifier(id_token).await.map_err(|e| e.to_string())?;
        // A refreshed ID token SHOULD NOT carry a nonce; if it does, it is the original one.
        let nonce_check = |nonce: Option<&Nonce>| match (nonce, original.get("nonce")) {
            (Some(got), Some(Value::String(was))) if got.secret() != was => {
                Err("its nonce is not the original one".to_owned())
            }
            _ => Ok(()),
        };
        let claims = id_token
            .claims(&verifier, nonce_check)
            .map_err(|e| format!("invalid: {e}"))?;
        if claims.issuer().as_str() != login.issuer {
            return Err("it names another issuer".into());
        }
        if claims.subject().as_str() != login.sub {
            return Err("it names another user (sub)".into());
        }
        if let Some(auth_time) = claims.auth_time()
            && u64::try_from(auth_time.timestamp()).ok() != Some(login.auth_time)
            && original.get("auth_time").is_some()
        {
            return Err("it names another authentication (auth_time)".into());
        }
        Ok(())
    }
}

/// The route of `post_logout_redirect_uri`, ready to mount: the browser back from the OP's
/// logout is sent home (`303` to `/`) when its `state` is the one this session sent, and told
/// the logout response was unexpected (`400`) otherwise. `T` is the application's
/// tower-sessions `Session`.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use oidc_logout::rp;
/// use tower_sessions::Session;
///
/// let app: Router = Router::new().route("/logged-out", get(rp::logged_out::<Session>));
/// ```
pub async fn logged_out<T: SessionAccess>(
    session: T,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let state = uri.query().and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "state")
            .map(|(_, value)| value.into_owned())
    });
    match check_logout_state(&session, state.as_deref()).await {
        Ok(true) => axum::response::Redirect::to("/").into_response(),
        Ok(false) => crate::session_store::plain(
            axum::http::StatusCode::BAD_REQUEST,
            "unexpected logout response (state does not match); you may still be logged in at the identity provider",
        ),
        Err(error) => error.into_response(),
    }
}

/// When the browser comes back to `post_logout_redirect_uri`: whether its `state` is the one
/// this session sent. The stored state is used up either way. ([`logged_out`] is the route.)
pub async fn check_logout_state(
    session: &impl SessionAccess,
    state: Option<&str>,
) -> Result<bool, RpError> {
    let expected = session.remove_value(LOGOUT_STATE_KEY).await?;
    Ok(match (expected, state) {
        (Some(Value::String(expected)), Some(got)) => {
            secrets_equal(expected.as_bytes(), got.as_bytes())
        }
        _ => false,
    })
}

/// The signature algorithms an OP may sign ID tokens with: the asymmetric ones (a shared
/// secret would let every client of the OP forge tokens for the others).
const ASYMMETRIC: [CoreJwsSigningAlgorithm; 10] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// The JSON object in a JWT's part `index` (0: header, 1: payload); `Null` when unreadable.
/// Only ever applied to tokens this application verified before storing them, or to find which
/// key verifies one.
fn part_of(token: &str, index: usize) -> Value {
    use base64::Engine as _;
    token
        .split('.')
        .nth(index)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn payload_of(token: &str) -> Value {
    part_of(token, 1)
}

/// A token's `kid` and `alg`, to pick the key that verifies it.
fn header_of(token: &str) -> (Option<String>, Option<String>) {
    let header = part_of(token, 0);
    let field = |name: &str| header.get(name).and_then(Value::as_str).map(str::to_owned);
    (field("kid"), field("alg"))
}

/// An OP's error code, safe to log: printable ASCII, at most 64 characters.
fn printable(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

/// What went wrong with a request to the OP, without the response body (which may echo
/// secrets).
fn describe<RE: std::error::Error + 'static, T: openidconnect::ErrorResponse + 'static>(
    error: &RequestTokenError<RE, T>,
) -> String {
    match error {
        RequestTokenError::ServerResponse(refusal) => printable(&refusal.to_string()),
        RequestTokenError::Request(error) => format!("request failed: {error}"),
        RequestTokenError::Parse(_, _) => "the OP's answer cannot be read".into(),
        RequestTokenError::Other(what) => printable(what),
    }
}
