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

use jsonwebtoken::Algorithm;
use reqwest::Url;
use serde_json::Value;

pub use crate::jose::KeySet;
use crate::jose::{JoseError, Jws};

/// The largest discovery document or JWKS accepted, in bytes.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// Why an issuer's metadata or keys could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

/// How a provider fetches and caches. Start from [`Default`] and change what differs.
#[derive(Debug, Clone)]
#[non_exhaustive]
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

impl ProviderSettings {
    /// Minimum time between two JWKS fetches caused by unknown `kid`s (default 10 s).
    #[must_use]
    pub fn with_refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.refetch_cooldown = cooldown;
        self
    }

    /// Keys older than this are refetched in the background (default an hour).
    #[must_use]
    pub fn with_max_key_age(mut self, age: Duration) -> Self {
        self.max_key_age = age;
        self
    }

    /// Allow `http://` for a non-loopback issuer or `jwks_uri` (default false).
    #[must_use]
    pub fn with_allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
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
    /// Keys given at construction, never fetched ([`Provider::from_jwks`]).
    fixed: bool,
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

    /// [`discover`](Self::discover), also returning the discovery document, so that an
    /// OpenID Connect client can be built from the same fetch.
    pub async fn discover_with_document(
        issuer: &str,
        http: reqwest::Client,
        settings: ProviderSettings,
    ) -> Result<(Arc<Self>, Value), ProviderError> {
        Self::discover_document(issuer, "openid-configuration", http, settings).await
    }

    /// The same from another well-known document that names `issuer` and `jwks_uri`, such as
    /// a Shared Signals transmitter's `ssf-configuration`.
    pub async fn discover_at(
        issuer: &str,
        well_known: &str,
        http: reqwest::Client,
        settings: ProviderSettings,
    ) -> Result<Arc<Self>, ProviderError> {
        Ok(Self::discover_document(issuer, well_known, http, settings)
            .await?
            .0)
    }

    async fn discover_document(
        issuer: &str,
        well_known: &str,
        http: reqwest::Client,
        settings: ProviderSettings,
    ) -> Result<(Arc<Self>, Value), ProviderError> {
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
            // Plain http on loopback was warned about once, with the issuer; elsewhere it is
            // allowed only on request, and worth a warning per endpoint.
            if check_transport(&url, settings.allow_insecure_http).map_err(invalid)?
                && !is_loopback(&url)
            {
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
            fixed: false,
        });
        let keys = provider.fetch_keys().await?;
        tracing::info!(issuer, keys = keys.len(), "issuer keys loaded");
        provider.store_keys(keys);
        Ok((provider, doc))
    }

    /// An issuer whose keys are given rather than discovered: a JWKS document configured by
    /// hand (an OP this process cannot reach), tests, fuzzing. Its keys are never refetched.
    pub fn from_jwks(issuer: &str, jwks: &Value) -> Result<Arc<Self>, ProviderError> {
        let invalid = |problem: &str| ProviderError::Invalid {
            url: issuer.to_owned(),
            problem: problem.to_owned(),
        };
        let jwks_uri = Url::parse(issuer).map_err(|_| invalid("the issuer is not a URL"))?;
        let keys = KeySet::from_jwks(jwks).ok_or_else(|| invalid("JWKS has no keys array"))?;
        let http = http_client().map_err(|source| ProviderError::Fetch {
            url: issuer.to_owned(),
            source,
        })?;
        Ok(Arc::new(Self {
            issuer: issuer.to_owned(),
            jwks_uri,
            end_session_endpoint: None,
            revocation_endpoint: None,
            token_endpoint: None,
            http,
            settings: ProviderSettings::default(),
            keys: RwLock::new(Arc::new(keys)),
            last_fetch_attempt: tokio::sync::Mutex::new(None),
            jwks_fetches: AtomicU64::new(0),
            fixed: true,
        }))
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
            .fetched_at()
            .is_none_or(|t| t.elapsed() > self.settings.max_key_age);
        // Spawn only when a fetch could actually happen now, so that an OP that stays down does
        // not cost a task per request.
        let due = || {
            self.last_fetch_attempt.try_lock().is_ok_and(|last| {
                last.is_none_or(|t| t.elapsed() >= self.settings.refetch_cooldown)
            })
        };
        if stale && !self.fixed && due() {
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

    /// Verify `token`'s signature with this issuer's keys (refetching once per cooldown when
    /// none matches its `kid` and algorithm: the OP rotated its keys).
    pub async fn verify(self: &Arc<Self>, token: &Jws<'_>) -> Result<(), JoseError> {
        let keys = self.keys_for(token.kid(), token.algorithm()).await;
        token.verify(&keys)
    }

    /// Called when no cached key matches a token: fetch the JWKS again unless a fetch happened
    /// within the cooldown, and return the keys as they are afterwards.
    pub async fn refetch(&self) -> Arc<KeySet> {
        if self.fixed {
            return self.snapshot();
        }
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
        metrics::counter!(crate::telemetry::JWKS_FETCHES, "issuer" => self.issuer.clone(), "result" => outcome)
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
        let keys = KeySet::from_jwks(&doc).ok_or_else(|| invalid("JWKS has no keys array"))?;
        if keys.is_empty() {
            return Err(invalid(
                "JWKS has no usable signing key (RSA, EC P-256/P-384 or Ed25519)",
            ));
        }
        Ok(keys)
    }
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

/// Whether `url` may be used: `https`, or `http` on a loopback host, or `http` anywhere when
/// `allow_insecure_http`. Returns `Ok(true)` when it is plain http (worth a warning).
pub fn check_transport(url: &Url, allow_insecure_http: bool) -> Result<bool, String> {
    match url.scheme() {
        "https" => Ok(false),
        "http" => {
            if is_loopback(url) || allow_insecure_http {
                Ok(true)
            } else {
                Err(format!(
                    "{url} uses plain http on a non-loopback host; use https, or allow insecure \
                     http if it is on a private network"
                ))
            }
        }
        other => Err(format!("{url}: scheme {other} is not supported; use https")),
    }
}

/// Whether `url`'s host is a loopback address or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
