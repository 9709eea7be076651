//! The tower layer that refuses revoked access tokens at a resource server.
//!
//! Two ways to use it: [`DenylistLayer::validating`] reads the bearer token, validates it as a
//! JWT access token of a trusted issuer ([`AccessTokenValidator`], keys from the same provider
//! code as the receiver) and hands the handler its [`RevocationClaims`] as a request extension;
//! [`DenylistLayer::after_validation`] sits behind the application's own token validation and
//! reads the [`RevocationClaims`] that validation put in the request extensions. Either way, a
//! token the [`Denylist`] refuses gets `401` with `WWW-Authenticate: Bearer
//! error="invalid_token", error_description="…"` (RFC 6750 §3), and `503` when the denylist is
//! out of sync and configured to fail closed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use headers::authorization::Bearer;
use headers::{Authorization, HeaderMapExt as _};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Denylist, Refusal, TokenFacts};
use crate::jose::{Jws, Rules, audience_names_one_of, is_hmac, numeric_date};
use crate::provider::Provider;
use crate::sys::unix_now;

/// The claims of a validated access token that revocation depends on. Insert it into the request
/// extensions from your own validation to use [`DenylistLayer::after_validation`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RevocationClaims {
    /// `iss`.
    #[serde(rename = "iss")]
    pub issuer: String,
    /// `sub`.
    #[serde(default)]
    pub sub: Option<String>,
    /// `sid`, when the OP puts it in access tokens.
    #[serde(default)]
    pub sid: Option<String>,
    /// `jti`.
    #[serde(default)]
    pub jti: Option<String>,
    /// `iat` (0 when absent: any revocation of the subject covers the token).
    #[serde(rename = "iat", default)]
    pub issued_at: u64,
}

impl RevocationClaims {
    fn facts(&self) -> TokenFacts<'_> {
        TokenFacts {
            issuer: &self.issuer,
            sub: self.sub.as_deref(),
            sid: self.sid.as_deref(),
            jti: self.jti.as_deref(),
            issued_at: self.issued_at,
        }
    }
}

/// Why an access token is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidToken {
    /// The header or claims cannot be decoded, or the header breaks a rule (an unknown `crit`,
    /// a key named in the header, a `typ` of another kind of token).
    #[error("the access token is malformed")]
    Malformed,
    /// `iss` is not trusted here.
    #[error("the access token's issuer is not trusted")]
    UnknownIssuer,
    /// No published key of the issuer verifies it, with an allowed algorithm.
    #[error("the access token's signature is invalid")]
    BadSignature,
    /// `exp`, `nbf`, `aud` or another claim rule failed.
    #[error("the access token is expired or not for this API")]
    Claims,
}

struct TrustedIssuer {
    provider: Arc<Provider>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
}

/// How far clocks may disagree, in seconds, for `exp`, `nbf` and `iat`.
const LEEWAY: u64 = 30;

/// The header rules of an access token: `typ` absent, `JWT` or `at+jwt` (RFC 9068), public-key
/// algorithms only.
const RULES: Rules = Rules {
    max_bytes: 16 * 1024,
    types: &["jwt", "at+jwt"],
    untyped: true,
    hmac: false,
};

/// Validates JWT access tokens of trusted issuers: the shared header rules, the signature with
/// the issuer's published keys, `iss`, `aud`, `exp` (required), `nbf`, and `iat` not in the
/// future.
#[derive(Default)]
pub struct AccessTokenValidator {
    issuers: HashMap<String, TrustedIssuer>,
}

impl std::fmt::Debug for AccessTokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenValidator")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AccessTokenValidator {
    /// A validator trusting no issuer yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust access tokens of `provider`'s issuer for one of `audiences`, signed with one of
    /// `algorithms` (never HMAC or `none`: they are dropped).
    #[must_use]
    pub fn with_issuer(
        mut self,
        provider: Arc<Provider>,
        audiences: &[&str],
        algorithms: &[Algorithm],
    ) -> Self {
        let trusted = TrustedIssuer {
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            algorithms: algorithms
                .iter()
                .copied()
                .filter(|a| !is_hmac(*a))
                .collect(),
            provider,
        };
        self.issuers
            .insert(trusted.provider.issuer().to_owned(), trusted);
        self
    }

    /// Validate `token` and return what revocation depends on.
    pub async fn validate(&self, token: &str) -> Result<RevocationClaims, InvalidToken> {
        let jws = Jws::parse(token, &RULES).map_err(|_| InvalidToken::Malformed)?;
        let issuer = jws.unverified_str("iss").ok_or(InvalidToken::Malformed)?;
        let trusted = self
            .issuers
            .get(issuer)
            .ok_or(InvalidToken::UnknownIssuer)?;
        jws.require_algorithm(&trusted.algorithms)
            .map_err(|_| InvalidToken::BadSignature)?;
        trusted
            .provider
            .verify(&jws)
            .await
            .map_err(|_| InvalidToken::BadSignature)?;
        let claims = jws.into_claims();
        check_claims(&claims, trusted, unix_now())?;
        serde_json::from_value(Value::Object(claims)).map_err(|_| InvalidToken::Claims)
    }
}

/// `aud` names one of the API's audiences; `exp` is present and not past, `nbf` and `iat` not
/// in the future (each with [`LEEWAY`]).
fn check_claims(
    claims: &Map<String, Value>,
    trusted: &TrustedIssuer,
    now: u64,
) -> Result<(), InvalidToken> {
    let audience_ok = audience_names_one_of(claims, &trusted.audiences);
    let date = |name| numeric_date(claims, name).map_err(|()| InvalidToken::Claims);
    let exp = date("exp")?.ok_or(InvalidToken::Claims)?;
    let in_future = |t: Option<u64>| t.is_some_and(|t| t > now.saturating_add(LEEWAY));
    if !audience_ok
        || exp.saturating_add(LEEWAY) <= now
        || in_future(date("nbf")?)
        || in_future(date("iat")?)
    {
        return Err(InvalidToken::Claims);
    }
    Ok(())
}

/// The layer; see the module docs.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use oidc_logout::denylist::sync::{self, DenylistSettings};
/// use oidc_logout::denylist::{AccessTokenValidator, DenylistLayer};
/// use oidc_logout::{Algorithm, Provider, ProviderSettings, http_client};
///
/// let issuer = "https://login.example.com/realms/main";
/// // Follow the logouts' denylist markers in Redis (the receiver writes them).
/// let denylist = sync::start(DenylistSettings::new("redis://127.0.0.1/", vec![issuer.into()])).await?;
/// let keys = Provider::discover(issuer, http_client()?, ProviderSettings::default()).await?;
/// let validator = AccessTokenValidator::new().with_issuer(keys, &["orders-api"], &[Algorithm::RS256]);
/// // A revoked user's access token is refused with 401 from the next request on.
/// let api: axum::Router = axum::Router::new().layer(DenylistLayer::validating(denylist, validator));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DenylistLayer {
    denylist: Denylist,
    validator: Option<Arc<AccessTokenValidator>>,
}

impl DenylistLayer {
    /// Validate bearer tokens with `validator`, then check them against `denylist`.
    pub fn validating(denylist: Denylist, validator: AccessTokenValidator) -> Self {
        Self {
            denylist,
            validator: Some(Arc::new(validator)),
        }
    }

    /// Check the [`RevocationClaims`] the application's own validation put in the request
    /// extensions; a request without them is refused (the validation did not run).
    pub fn after_validation(denylist: Denylist) -> Self {
        Self {
            denylist,
            validator: None,
        }
    }
}

impl<S> tower::Layer<S> for DenylistLayer {
    type Service = DenylistService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DenylistService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`DenylistLayer`] wraps around an inner service.
#[derive(Debug, Clone)]
#[doc(hidden)]
pub struct DenylistService<S> {
    inner: S,
    layer: DenylistLayer,
}

/// An RFC 6750 refusal: `401` with `WWW-Authenticate`, or `503` when out of sync.
/// `reason` labels the refusal in [`DENYLIST_REFUSALS`](crate::telemetry::DENYLIST_REFUSALS).
fn refuse<B: Default>(
    reason: &'static str,
    refusal: Option<&dyn std::fmt::Display>,
    not_in_sync: bool,
) -> Response<B> {
    metrics::counter!(crate::telemetry::DENYLIST_REFUSALS, "reason" => reason).increment(1);
    let mut response = Response::new(B::default());
    if not_in_sync {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let challenge = match refusal {
        // RFC 6750 §3.1: no error code when the request has no token at all.
        None => "Bearer".to_owned(),
        Some(why) => format!("Bearer error=\"invalid_token\", error_description=\"{why}\""),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn bearer<B>(request: &Request<B>) -> Option<String> {
    let Authorization(bearer) = request.headers().typed_get::<Authorization<Bearer>>()?;
    Some(bearer.token().trim().to_owned()).filter(|t| !t.is_empty())
}

impl<S, ReqB, ResB> tower::Service<Request<ReqB>> for DenylistService<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    ReqB: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let verdict = match &layer.validator {
                Some(validator) => {
                    let Some(token) = bearer(&request) else {
                        return Ok(refuse("missing_token", None, false));
                    };
                    match validator.validate(&token).await {
                        Ok(claims) => {
                            let verdict = layer.denylist.check(&claims.facts());
                            request.extensions_mut().insert(claims);
                            verdict
                        }
                        Err(invalid) => return Ok(refuse("invalid_token", Some(&invalid), false)),
                    }
                }
                None => match request.extensions().get::<RevocationClaims>() {
                    Some(claims) => layer.denylist.check(&claims.facts()),
                    None => {
                        return Ok(refuse(
                            "invalid_token",
                            Some(&"no validated access token"),
                            false,
                        ));
                    }
                },
            };
            match verdict {
                Ok(()) => inner.call(request).await,
                // Logged once per outage by the sync task, not per request.
                Err(Refusal::NotInSync) => Ok(refuse("out_of_sync", None, true)),
                Err(refusal) => Ok(refuse("revoked", Some(&refusal), false)),
            }
        })
    }
}
