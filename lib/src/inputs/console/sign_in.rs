//! Signing administrators in through the OP: the authorization code flow with PKCE, on this
//! crate's own JOSE (aws-lc) rather than a second OpenID Connect stack. The ID token is checked
//! as OpenID Connect Core §3.1.3.7 says (signature with the OP's keys, `iss`, `aud`, `azp`,
//! `exp`, `nonce`), then its configured claim must hold one of the configured values; everyone
//! else is refused. The console asks for no refresh token and keeps no token: once the claim is
//! checked, only who signed in is remembered.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::config::ConsoleOidc;
use super::session::{Admin, PendingOidc};
use crate::jose::{self, Jws, Rules};
use crate::provider::{Provider, ProviderSettings, check_transport};
use crate::sys::{random_id, secrets_equal, unix_now};

/// How long the OP may take to answer the code exchange.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest token endpoint answer read.
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// How far the OP's clock may be from this one.
const LEEWAY_SECS: u64 = 60;

/// Why a sign-in through the OP failed; shown to the person signing in, so never a token.
#[derive(Debug, thiserror::Error)]
pub(super) enum SignInError {
    #[error("the OP could not be reached or its discovery document is unusable")]
    Discovery,
    #[error("the OP refused the sign-in")]
    Refused,
    #[error("this sign-in was not started here, or took too long: start again")]
    NoSignIn,
    #[error("the OP's answer could not be used")]
    BadAnswer,
    #[error("the ID token did not verify")]
    BadIdToken,
    #[error("this account is not a console administrator")]
    NotAdmin,
    #[error("the system's random number generator failed")]
    Random,
}

impl SignInError {
    /// The reason label of the refusal metric.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Self::Discovery => "op_unreachable",
            Self::Refused => "op_refused",
            Self::NoSignIn => "no_sign_in",
            Self::BadAnswer => "bad_answer",
            Self::BadIdToken => "bad_id_token",
            Self::NotAdmin => "not_admin",
            Self::Random => "random",
        }
    }
}

/// Where the OP takes sign-ins and codes.
struct Endpoints {
    provider: Arc<Provider>,
    authorization: Url,
    token: Url,
}

/// The console's OIDC client.
pub(super) struct Oidc {
    settings: ConsoleOidc,
    http: reqwest::Client,
    /// Discovered at the first sign-in, so that the service starts while the OP is down.
    endpoints: OnceCell<Endpoints>,
}

impl Oidc {
    pub(super) fn new(settings: ConsoleOidc, http: reqwest::Client) -> Self {
        Self {
            settings,
            http,
            endpoints: OnceCell::new(),
        }
    }

    async fn endpoints(&self) -> Result<&Endpoints, SignInError> {
        self.endpoints
            .get_or_try_init(|| async {
                let settings = ProviderSettings::default()
                    .with_allow_insecure_http(self.settings.allow_insecure_http);
                let (provider, document) = Provider::discover_with_document(
                    &self.settings.issuer,
                    self.http.clone(),
                    settings,
                )
                .await
                .map_err(|error| {
                    tracing::warn!(%error, "the console's OP could not be discovered");
                    SignInError::Discovery
                })?;
                let endpoint = |name: &str| {
                    document
                        .get(name)
                        .and_then(Value::as_str)
                        .and_then(|u| Url::parse(u).ok())
                        .filter(|u| check_transport(u, self.settings.allow_insecure_http).is_ok())
                        .ok_or(SignInError::Discovery)
                };
                Ok(Endpoints {
                    authorization: endpoint("authorization_endpoint")?,
                    token: endpoint("token_endpoint")?,
                    provider,
                })
            })
            .await
    }

    /// Start a sign-in: what the browser keeps, and where to send it.
    pub(super) async fn begin(&self) -> Result<(PendingOidc, Url), SignInError> {
        let endpoints = self.endpoints().await?;
        let random = || random_id(32).map_err(|_| SignInError::Random);
        let pending = PendingOidc {
            state: random()?,
            nonce: random()?,
            verifier: random()?,
        };
        let challenge = URL_SAFE_NO_PAD
            .encode(digest::digest(&digest::SHA256, pending.verifier.as_bytes()).as_ref());
        let mut url = endpoints.authorization.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", self.settings.redirect_uri.as_str())
            .append_pair("scope", "openid profile email")
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok((pending, url))
    }

    /// Finish a sign-in at the callback: who signed in, if they are an administrator.
    pub(super) async fn finish(
        &self,
        pending: &PendingOidc,
        query: &Map<String, Value>,
    ) -> Result<Admin, SignInError> {
        let text = |name: &str| query.get(name).and_then(Value::as_str);
        let state_matches =
            text("state").is_some_and(|s| secrets_equal(s.as_bytes(), pending.state.as_bytes()));
        if !state_matches {
            return Err(SignInError::NoSignIn);
        }
        if text("error").is_some() {
            return Err(SignInError::Refused);
        }
        let code = text("code").ok_or(SignInError::BadAnswer)?;
        let endpoints = self.endpoints().await?;
        let id_token = self.exchange(endpoints, code, &pending.verifier).await?;
        let claims = self.verify(endpoints, &id_token, &pending.nonce).await?;
        self.admin(&claims)
    }

    /// Exchange the code for the ID token.
    async fn exchange(
        &self,
        endpoints: &Endpoints,
        code: &str,
        verifier: &str,
    ) -> Result<String, SignInError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.settings.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        let mut request = self
            .http
            .post(endpoints.token.clone())
            .timeout(TOKEN_TIMEOUT);
        match &self.settings.client_secret {
            Some(secret) => {
                request = request.basic_auth(
                    form_encode(&self.settings.client_id),
                    Some(form_encode(secret.expose())),
                );
            }
            None => form.push(("client_id", &self.settings.client_id)),
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|_| SignInError::Refused)?;
        if !response.status().is_success() {
            return Err(SignInError::Refused);
        }
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| SignInError::BadAnswer)? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(SignInError::BadAnswer);
            }
            answer.extend_from_slice(&chunk);
        }
        let answer: Value = serde_json::from_slice(&answer).map_err(|_| SignInError::BadAnswer)?;
        answer
            .get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(SignInError::BadAnswer)
    }

    /// Check the ID token (OpenID Connect Core §3.1.3.7) and return its claims.
    async fn verify(
        &self,
        endpoints: &Endpoints,
        id_token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, SignInError> {
        const RULES: Rules = Rules {
            max_bytes: 64 * 1024,
            types: &["jwt"],
            untyped: true,
            hmac: false,
        };
        let jws = Jws::parse(id_token, &RULES).map_err(|_| SignInError::BadIdToken)?;
        endpoints
            .provider
            .verify(&jws)
            .await
            .map_err(|_| SignInError::BadIdToken)?;
        let claims = jws.into_claims();
        let now = unix_now();
        let client = self.settings.client_id.clone();
        let azp = claims.get("azp").and_then(Value::as_str);
        // OpenID Connect Core §3.1.3.7: the client is an audience and no other audience is
        // trusted here, so the client must be the only one.
        let only_this_client = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == client,
            Some(Value::Array(list)) => !list.is_empty() && list.iter().all(|a| *a == *client),
            _ => false,
        };
        let good = claims.get("iss").and_then(Value::as_str) == Some(self.settings.issuer.as_str())
            && only_this_client
            && azp.is_none_or(|azp| azp == client)
            && matches!(jose::numeric_date(&claims, "exp"), Ok(Some(exp)) if exp.saturating_add(LEEWAY_SECS) > now)
            && matches!(jose::numeric_date(&claims, "iat"), Ok(Some(iat)) if iat <= now.saturating_add(LEEWAY_SECS))
            && claims
                .get("nonce")
                .and_then(Value::as_str)
                .is_some_and(|n| secrets_equal(n.as_bytes(), nonce.as_bytes()))
            && claims
                .get("sub")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
        if good {
            Ok(claims)
        } else {
            Err(SignInError::BadIdToken)
        }
    }

    /// The administrator these claims name, if the configured claim holds a configured value.
    fn admin(&self, claims: &Map<String, Value>) -> Result<Admin, SignInError> {
        let admits = |v: &Value| {
            v.as_str()
                .is_some_and(|v| self.settings.admin_values.iter().any(|a| a == v))
        };
        let admitted = match claims.get(&self.settings.admin_claim) {
            Some(Value::Array(values)) => values.iter().any(admits),
            Some(value) => admits(value),
            None => false,
        };
        if !admitted {
            return Err(SignInError::NotAdmin);
        }
        // Named by `sub` (unique, stable) in the audit; shown by a friendlier claim.
        let text = |claim: &str| claims.get(claim).and_then(Value::as_str);
        let sub = text("sub").unwrap_or_default();
        let display = ["preferred_username", "email"]
            .iter()
            .find_map(|c| text(c))
            .unwrap_or(sub);
        Ok(Admin {
            name: format!("oidc:{}", printable(sub)),
            display: printable(display),
            token: None,
            issuer: None,
            customer: None,
        })
    }
}

/// RFC 6749 §2.3.1: the client id and secret are form-encoded before Basic authentication.
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// At most 64 printable characters of an OP's claim, for the audit line.
fn printable(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}
