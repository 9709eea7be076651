//! Refresh-token revocation at the OP (RFC 7009), authenticated as the client.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use secrecy::ExposeSecret as _;
use tokio::sync::mpsc;

use super::Client;
use crate::core::{self, AfterLogout};
use crate::index::{RecordStore, StoreError};
use crate::provider::Provider;
use crate::session_store::{TokenKeys, TokenSecret, login_of_bytes, open_refresh_token};

/// How often a failed revocation is retried in the background, at most.
const RETRIES: usize = 5;

/// The outcome of a revocation request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// The OP answered 200: the token is revoked (or was already invalid).
    Revoked,
    /// The OP could not revoke it now (503, network error); try again after `after`.
    Retry {
        /// How long to wait (the OP's `Retry-After`, or a default).
        after: Duration,
        /// What went wrong.
        reason: String,
    },
    /// The OP refused for good (`unsupported_token_type`, bad client credentials, no
    /// `revocation_endpoint`).
    Refused {
        /// What the OP said.
        reason: String,
    },
}

/// POST the refresh token to the OP's `revocation_endpoint`.
pub async fn revoke_refresh_token(provider: &Provider, client: &Client, token: &str) -> Revocation {
    let Some(endpoint) = provider.revocation_endpoint() else {
        return Revocation::Refused {
            reason: "the OP has no revocation_endpoint".into(),
        };
    };
    let mut form = vec![("token", token), ("token_type_hint", "refresh_token")];
    let mut request = provider.http().post(endpoint.clone());
    match &client.secret {
        // client_secret_basic: both parts form-encoded, then Basic (RFC 6749 §2.3.1).
        Some(secret) => {
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = format!("{}:{}", encode(&client.id), encode(secret.expose_secret()));
            use base64::Engine as _;
            let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
            request = request.header("authorization", format!("Basic {basic}"));
        }
        None => form.push(("client_id", &client.id)),
    }
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let response = request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            return Revocation::Retry {
                after: Duration::from_secs(5),
                reason: e.to_string(),
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match status {
        200 => Revocation::Revoked,
        503 | 500 | 502 | 504 | 429 => Revocation::Retry {
            after: retry_after
                .unwrap_or(Duration::from_secs(5))
                .min(Duration::from_secs(300)),
            reason: format!("HTTP {status}"),
        },
        _ => {
            let text = response.text().await.unwrap_or_default();
            let error = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {status}"));
            Revocation::Refused { reason: error }
        }
    }
}

/// The OP asked to try again later.
#[derive(Debug)]
struct TryLater {
    after: Duration,
    reason: String,
}

/// Keep trying to revoke `token` in the background, a few times, backing off exponentially
/// and never sooner than the OP's `Retry-After`.
pub(super) fn retry_in_background(
    provider: Arc<Provider>,
    client: super::Client,
    token: TokenSecret,
) {
    retry_until_done(move || {
        let (provider, client, token) = (Arc::clone(&provider), client.clone(), token.clone());
        async move { revoke_refresh_token(&provider, &client, token.expose()).await }
    });
}

/// Run `attempt` in the background until it is not [`Revocation::Retry`], a few times,
/// backing off exponentially and never sooner than the `after` it asks for.
pub(crate) fn retry_until_done<F, Fut>(attempt: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Revocation> + Send,
{
    tokio::spawn(async move {
        let attempt = || async {
            match attempt().await {
                Revocation::Retry { after, reason } => Err(TryLater { after, reason }),
                done => Ok(done),
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(300))
            .with_max_times(RETRIES);
        let outcome = attempt
            .retry(backoff)
            .adjust(|later: &TryLater, wait| wait.map(|w| w.max(later.after)))
            .notify(|later: &TryLater, wait| {
                tracing::warn!(reason = %later.reason, ?wait, "refresh token revocation failed; will retry");
            })
            .await;
        match outcome {
            Ok(Revocation::Refused { reason }) => {
                tracing::warn!(%reason, "refresh token revocation refused");
            }
            Ok(_) => tracing::info!("refresh token revoked after retrying"),
            Err(_) => tracing::error!(
                "refresh token revocation gave up; the token lives until it expires at the OP"
            ),
        }
    });
}

/// How many ended sessions the background worker looks up in one round trip, at most.
const LOOKUP_BATCH: usize = 64;

/// Revokes the refresh tokens of the sessions a back-channel logout ended, so that a stolen
/// refresh token does not outlive the logout. Plug it into the receiver with
/// [`CoreBuilder::after_logout`](crate::core::CoreBuilder::after_logout); it reads the
/// tokens from the session store's records and removes the records when done.
///
/// The logout's response does not wait for any of it: ended sessions are queued to one
/// background worker (started on first use) that looks up their records in batches, one round
/// trip per batch, and revokes each refresh token it finds in a task of its own.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use oidc_logout::rp::{Client, RefreshTokenRevocation};
/// use oidc_logout::{Core, Provider, ProviderSettings, RedisIndex, http_client};
///
/// let index = RedisIndex::connect("redis://127.0.0.1/", Default::default()).await?;
/// let issuer = "https://login.example.com/realms/main";
/// let op = Provider::discover(issuer, http_client()?, ProviderSettings::default()).await?;
/// let app = Client::new("web-app").with_secret(Some(std::env::var("CLIENT_SECRET")?.into()));
/// // Every session a logout ends has its refresh token revoked at the OP (RFC 7009).
/// let revocation = RefreshTokenRevocation::new(index.clone()).with_issuer(op, vec![app]);
/// let core = Core::builder(index).issuer(issuer).after_logout(Arc::new(revocation)).build();
/// # let _ = core; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RefreshTokenRevocation<B> {
    records: B,
    issuers: Issuers,
    keys: Option<TokenKeys>,
    queue: Arc<OnceLock<mpsc::UnboundedSender<Ended>>>,
}

/// The issuers whose sessions' refresh tokens are revoked, with their OP and clients.
type Issuers = Arc<HashMap<String, (Arc<Provider>, Vec<Client>)>>;

/// A session a logout ended, waiting for its record to be looked up.
#[derive(Debug)]
struct Ended {
    issuer: String,
    session_id: String,
}

impl<B: RecordStore> RefreshTokenRevocation<B> {
    /// Revocation reading session records from `records` (the session store's backend).
    pub fn new(records: B) -> Self {
        Self {
            records,
            issuers: Arc::default(),
            keys: None,
            queue: Arc::default(),
        }
    }

    /// Open refresh tokens the session store sealed with these keys (the store's
    /// [`with_token_keys`](crate::session_store::LogoutAware::with_token_keys)).
    #[must_use]
    pub fn with_token_keys(mut self, keys: TokenKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Revoke tokens of `provider`'s sessions, authenticating as the client that obtained them
    /// (the login's `client_id`; the first client when the login names none).
    #[must_use]
    pub fn with_issuer(mut self, provider: Arc<Provider>, clients: Vec<Client>) -> Self {
        Arc::make_mut(&mut self.issuers).insert(provider.issuer().to_owned(), (provider, clients));
        self
    }

    fn held(&self) -> Held {
        Held {
            issuers: Arc::clone(&self.issuers),
            keys: self.keys.clone(),
        }
    }

    fn queue(&self) -> &mpsc::UnboundedSender<Ended> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(work(self.records.clone(), self.held(), rx));
            tx
        })
    }
}

impl<B: RecordStore> AfterLogout for RefreshTokenRevocation<B> {
    fn sessions_ended(&self, ended: &core::Ended<'_>) {
        let (issuer, session_ids) = (ended.issuer, ended.session_ids);
        if !self.issuers.contains_key(issuer) {
            return;
        }
        let queue = self.queue();
        for id in session_ids {
            let ended = Ended {
                issuer: issuer.to_owned(),
                session_id: id.clone(),
            };
            if queue.send(ended).is_err() {
                tracing::error!("the refresh-token revocation worker has stopped");
                return;
            }
        }
    }
}

/// What finding a session record's refresh token needs: the issuers' OPs and clients, and the
/// keys that open sealed tokens.
#[derive(Debug, Clone)]
struct Held {
    issuers: Issuers,
    keys: Option<TokenKeys>,
}

impl Held {
    /// The refresh token a session record holds, with the OP and the client to revoke it as
    /// (the login's `client_id`; the first client when the login names none).
    fn token(
        &self,
        issuer: &str,
        data: Option<Vec<u8>>,
    ) -> Option<(Arc<Provider>, Client, TokenSecret)> {
        let mut login = login_of_bytes(&data?)?;
        let (provider, clients) = self.issuers.get(issuer)?;
        open_refresh_token(self.keys.as_ref(), &mut login);
        let token = login.refresh_token.clone()?;
        let client = login
            .client_id
            .and_then(|wanted| clients.iter().find(|c| c.id == wanted))
            .or_else(|| clients.first())?;
        Some((Arc::clone(provider), client.clone(), token))
    }
}

/// What [`RefreshTokenRevocation::revoke_now`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevocationReport {
    /// Refresh tokens the OP revoked.
    pub revoked: u64,
    /// Refresh tokens it could not revoke (they live until they expire at the OP).
    pub failed: u64,
}

impl<B: RecordStore> RefreshTokenRevocation<B> {
    /// Revoke the refresh tokens held by these (already ended) sessions now and wait for the
    /// OP's answers, without background retries: for a command-line tool that exits after.
    pub async fn revoke_now(
        &self,
        issuer: &str,
        session_ids: &[String],
    ) -> Result<RevocationReport, StoreError> {
        let mut report = RevocationReport::default();
        let found = self.records.get_records(session_ids).await?;
        let held = self.held();
        for (id, data) in session_ids.iter().zip(found) {
            let Some((provider, client, token)) = held.token(issuer, data) else {
                continue;
            };
            match revoke_refresh_token(&provider, &client, token.expose()).await {
                Revocation::Revoked => report.revoked += 1,
                Revocation::Retry { reason, .. } | Revocation::Refused { reason } => {
                    tracing::warn!(%reason, "refresh token revocation failed");
                    report.failed += 1;
                }
            }
            self.records.delete_record(id).await?;
        }
        Ok(report)
    }
}

/// The background worker: look up queued sessions' records a batch at a time and revoke the
/// refresh tokens they hold.
async fn work<B: RecordStore>(records: B, held: Held, mut queue: mpsc::UnboundedReceiver<Ended>) {
    let mut batch = Vec::with_capacity(LOOKUP_BATCH);
    while queue.recv_many(&mut batch, LOOKUP_BATCH).await > 0 {
        let ids: Vec<String> = batch.iter().map(|e| e.session_id.clone()).collect();
        let found = match records.get_records(&ids).await {
            Ok(found) => found,
            Err(error) => {
                metrics::counter!(crate::telemetry::REDIS_ERRORS, "operation" => "read_records")
                    .increment(1);
                tracing::warn!(%error, sessions = ids.len(), "cannot read ended sessions to revoke their refresh tokens");
                batch.clear();
                continue;
            }
        };
        for (ended, data) in batch.drain(..).zip(found) {
            let Some((provider, client, token)) = held.token(&ended.issuer, data) else {
                continue;
            };
            let records = records.clone();
            tokio::spawn(async move {
                match revoke_refresh_token(&provider, &client, token.expose()).await {
                    Revocation::Revoked => {
                        metrics::counter!(crate::telemetry::REFRESH_REVOCATIONS, "result" => "revoked")
                            .increment(1);
                        tracing::info!("refresh token of an ended session revoked")
                    }
                    Revocation::Retry { reason, .. } => {
                        metrics::counter!(crate::telemetry::REFRESH_REVOCATIONS, "result" => "failed")
                            .increment(1);
                        tracing::warn!(%reason, "refresh token revocation failed; retrying in the background");
                        retry_in_background(provider, client, token);
                    }
                    Revocation::Refused { reason } => {
                        metrics::counter!(crate::telemetry::REFRESH_REVOCATIONS, "result" => "failed")
                            .increment(1);
                        tracing::warn!(%reason, "refresh token revocation refused by the OP");
                    }
                }
                if let Err(error) = records.delete_record(&ended.session_id).await {
                    tracing::warn!(%error, "cannot remove an ended session's record");
                }
            });
        }
    }
}
