//! The issuers this receiver trusts: discovery, and a cache of their signing keys.
//!
//! Keys come only from the `jwks_uri` of the issuer's discovery document, never from a token.
//! They are decoded once per fetch and kept per `kid`. A token whose `kid` is not cached triggers
//! at most one JWKS fetch per issuer per cooldown, so a flood of random `kid`s cannot turn the
//! receiver into an amplifier against the OP; a failed fetch keeps the last good keys. Keys older
//! than `max_age` are refetched in the background, so a key the OP withdrew stops working.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::Url;
use serde_json::Value;

use crate::config::check_transport;
use crate::logout_token::parse_algorithm;

/// The largest discovery document or JWKS accepted, in bytes.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// Why an issuer's metadata or keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The request failed (connection refused, timeout, TLS).
    #[error("cannot fetch {url}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a non-200 status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// The status.
        status: u16,
    },
    /// The document is not what it must be.
    #[error("{url}: {problem}")]
    Invalid {
        /// What was fetched.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// How a provider fetches and caches.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Minimum time between two JWKS fetches caused by unknown `kid`s.
    pub refetch_cooldown: Duration,
    /// Keys older than this are refetched in the background.
    pub max_key_age: Duration,
    /// Allow `http://` for a non-loopback issuer or `jwks_uri`.
    pub allow_insecure_http: bool,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            refetch_cooldown: Duration::from_secs(10),
            max_key_age: Duration::from_secs(3600),
            allow_insecure_http: false,
        }
    }
}

/// One verification key from the JWKS.
#[derive(Clone)]
struct CachedKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// A snapshot of an issuer's keys.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<CachedKey>,
    fetched_at: Option<Instant>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, &k.algorithms)))
            .finish()
    }
}

impl KeySet {
    /// The keys that may verify a token with this `kid` (any key, when the token has none) and
    /// algorithm.
    pub fn matching<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a DecodingKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| {
                k.algorithms.contains(&alg) && (kid.is_none() || k.kid.as_deref() == kid)
            })
            .map(|k| &k.key)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One trusted issuer: its discovery data and its cached keys.
pub struct Provider {
    issuer: String,
    jwks_uri: Url,
    end_session_endpoint: Option<Url>,
    revocation_endpoint: Option<Url>,
    token_endpoint: Option<Url>,
    http: reqwest::Client,
    settings: ProviderSettings,
    keys: RwLock<Arc<KeySet>>,
    last_fetch_attempt: tokio::sync::Mutex<Option<Instant>>,
    jwks_fetches: AtomicU64,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.issuer)
            .field("jwks_uri", &self.jwks_uri.as_str())
            .finish_non_exhaustive()
    }
}

/// An HTTP client suited to fetching OP metadata: short timeouts, no redirects.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("oidc-logout/", env!("CARGO_PKG_VERSION")))
        .build()
}

impl Provider {
    /// Fetch the issuer's discovery document and its JWKS. Fails if either cannot be fetched or
    /// is invalid: the receiver should not start with an issuer it cannot verify.
    pub async fn discover(
        issuer: &str,
        http: reqwest::Client,
        settings: ProviderSettings,
    ) -> Result<Arc<Self>, ProviderError> {
        Self::discover_at(issuer, "openid-configuration", http, settings).await
    }

    /// The same from another well-known document that names `issuer` and `jwks_uri`, such as
    /// a Shared Signals transmitter's `ssf-configuration`.
    pub async fn discover_at(
        issuer: &str,
        well_known: &str,
        http: reqwest::Client,
        settings: ProviderSettings,
    ) -> Result<Arc<Self>, ProviderError> {
        let url = format!("{}/.well-known/{well_known}", issuer.trim_end_matches('/'));
        let doc = fetch_json(&http, &url).await?;
        let invalid = |problem: String| ProviderError::Invalid {
            url: url.clone(),
            problem,
        };
        match doc.get("issuer").and_then(Value::as_str) {
            Some(found) if found == issuer => {}
            Some(found) => {
                return Err(invalid(format!(
                    "discovery says issuer {found:?}, configured is {issuer:?}; they must be equal"
                )));
            }
            None => return Err(invalid("discovery document has no issuer".into())),
        }
        let endpoint = |name: &str| -> Result<Option<Url>, ProviderError> {
            let Some(value) = doc.get(name) else {
                return Ok(None);
            };
            let url = value
                .as_str()
                .and_then(|v| Url::parse(v).ok())
                .ok_or_else(|| invalid(format!("{name} is not a URL")))?;
            if check_transport(&url, settings.allow_insecure_http).map_err(invalid)? {
                tracing::warn!(%url, "{name} uses plain http");
            }
            Ok(Some(url))
        };
        let jwks_uri = endpoint("jwks_uri")?
            .ok_or_else(|| invalid("discovery document has no jwks_uri".into()))?;
        let end_session_endpoint = endpoint("end_session_endpoint")?;
        let revocation_endpoint = endpoint("revocation_endpoint")?;
        let token_endpoint = endpoint("token_endpoint")?;
        if doc.get("backchannel_logout_supported") == Some(&Value::Bool(false)) {
            tracing::warn!(issuer, "issuer says backchannel_logout_supported: false");
        }
        let provider = Arc::new(Self {
            issuer: issuer.to_owned(),
            jwks_uri,
            end_session_endpoint,
            revocation_endpoint,
            token_endpoint,
            http,
            settings,
            keys: RwLock::default(),
            last_fetch_attempt: tokio::sync::Mutex::new(None),
            jwks_fetches: AtomicU64::new(0),
        });
        let keys = provider.fetch_keys().await?;
        tracing::info!(issuer, keys = keys.len(), "issuer keys loaded");
        provider.store_keys(keys);
        Ok(provider)
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The OP's `end_session_endpoint` (RP-Initiated Logout), if it has one.
    pub fn end_session_endpoint(&self) -> Option<&Url> {
        self.end_session_endpoint.as_ref()
    }

    /// The OP's `revocation_endpoint` (RFC 7009), if it has one.
    pub fn revocation_endpoint(&self) -> Option<&Url> {
        self.revocation_endpoint.as_ref()
    }

    /// The OP's `token_endpoint`, if it has one.
    pub fn token_endpoint(&self) -> Option<&Url> {
        self.token_endpoint.as_ref()
    }

    /// The HTTP client used to talk to the OP.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// How many JWKS fetches this provider made (discovery's included).
    pub fn jwks_fetches(&self) -> u64 {
        self.jwks_fetches.load(Ordering::Relaxed)
    }

    /// The cached keys. Starts a background refetch when they are older than `max_key_age`.
    pub fn keys(self: &Arc<Self>) -> Arc<KeySet> {
        let keys = self.snapshot();
        let stale = keys
            .fetched_at
            .is_none_or(|t| t.elapsed() > self.settings.max_key_age);
        // Spawn only when a fetch could actually happen now, so that an OP that stays down does
        // not cost a task per request.
        let due = || {
            self.last_fetch_attempt.try_lock().is_ok_and(|last| {
                last.is_none_or(|t| t.elapsed() >= self.settings.refetch_cooldown)
            })
        };
        if stale && due() {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                this.refetch().await;
            });
        }
        keys
    }

    /// The keys to verify a token with this `kid` and algorithm: the cached ones, or, when none
    /// of them matches (the OP rotated its keys), the keys after fetching the JWKS again (at
    /// most once per cooldown, whoever asks).
    pub async fn keys_for(self: &Arc<Self>, kid: Option<&str>, alg: Algorithm) -> Arc<KeySet> {
        let keys = self.keys();
        if keys.matching(kid, alg).next().is_some() {
            return keys;
        }
        self.refetch().await
    }

    /// Called when no cached key matches a token: fetch the JWKS again unless a fetch happened
    /// within the cooldown, and return the keys as they are afterwards.
    pub async fn refetch(&self) -> Arc<KeySet> {
        let mut last = self.last_fetch_attempt.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.settings.refetch_cooldown) {
            return self.snapshot();
        }
        *last = Some(Instant::now());
        match self.fetch_keys().await {
            Ok(keys) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len(), "issuer keys refreshed");
                self.store_keys(keys);
            }
            Err(error) => {
                tracing::warn!(issuer = %self.issuer, %error, "JWKS refresh failed; keeping the last good keys");
            }
        }
        self.snapshot()
    }

    fn snapshot(&self) -> Arc<KeySet> {
        Arc::clone(
            &self
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn store_keys(&self, keys: KeySet) {
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
    }

    async fn fetch_keys(&self) -> Result<KeySet, ProviderError> {
        self.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_keys_once().await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(crate::ops::JWKS_FETCHES, "issuer" => self.issuer.clone(), "result" => outcome)
            .increment(1);
        result
    }

    async fn fetch_keys_once(&self) -> Result<KeySet, ProviderError> {
        let url = self.jwks_uri.as_str();
        let doc = fetch_json(&self.http, url).await?;
        let invalid = |problem: &str| ProviderError::Invalid {
            url: url.to_owned(),
            problem: problem.to_owned(),
        };
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(invalid("JWKS has no keys array"));
        };
        let keys: Vec<CachedKey> = entries.iter().filter_map(parse_jwk).collect();
        if keys.is_empty() {
            return Err(invalid(
                "JWKS has no usable signing key (RSA, EC P-256/P-384 or Ed25519)",
            ));
        }
        Ok(KeySet {
            keys,
            fetched_at: Some(Instant::now()),
        })
    }
}

/// A JWK usable for verifying signatures, or `None` (HMAC keys, encryption keys, other types
/// and malformed entries are skipped, never turned into a verifier).
fn parse_jwk(jwk: &Value) -> Option<CachedKey> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if field("use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops.as_array()?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return None;
        }
    }
    let (family, key) = match (field("kty")?, field("crv")) {
        ("RSA", _) => (
            &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ][..],
            DecodingKey::from_rsa_components(field("n")?, field("e")?).ok()?,
        ),
        ("EC", Some("P-256")) => (
            &[Algorithm::ES256][..],
            DecodingKey::from_ec_components(field("x")?, field("y")?).ok()?,
        ),
        ("EC", Some("P-384")) => (
            &[Algorithm::ES384][..],
            DecodingKey::from_ec_components(field("x")?, field("y")?).ok()?,
        ),
        ("OKP", Some("Ed25519")) => (
            &[Algorithm::EdDSA][..],
            DecodingKey::from_ed_components(field("x")?).ok()?,
        ),
        _ => return None,
    };
    let algorithms = match field("alg") {
        None => family.to_vec(),
        Some(name) => {
            let alg = parse_algorithm(name)?;
            if !family.contains(&alg) {
                return None;
            }
            vec![alg]
        }
    };
    Some(CachedKey {
        kid: field("kid").map(str::to_owned),
        algorithms,
        key,
    })
}

async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Value, ProviderError> {
    let fetch_error = |source| ProviderError::Fetch {
        url: url.to_owned(),
        source,
    };
    let mut response = http.get(url).send().await.map_err(fetch_error)?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(ProviderError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(ProviderError::Invalid {
                url: url.to_owned(),
                problem: format!("document is larger than {MAX_DOCUMENT_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    match serde_json::from_slice(&body) {
        Ok(doc @ Value::Object(_)) => Ok(doc),
        _ => Err(ProviderError::Invalid {
            url: url.to_owned(),
            problem: "not a JSON object".into(),
        }),
    }
}
