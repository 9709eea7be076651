//! Refresh-token revocation at the OP (RFC 7009), authenticated as the client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::Client;
use crate::provider::Provider;
use crate::receiver::AfterLogout;
use crate::session_store::{TokenSecret, login_of};
use crate::store::RecordStore;

/// How often a failed revocation is retried in the background, at most.
const RETRIES: u32 = 5;

/// The outcome of a revocation request.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Keep trying to revoke `token` in the background, honouring `Retry-After`, a few times.
pub(super) fn retry_in_background(
    provider: Arc<Provider>,
    client: super::Client,
    token: TokenSecret,
) {
    tokio::spawn(async move {
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=RETRIES {
            tokio::time::sleep(wait).await;
            match revoke_refresh_token(&provider, &client, token.expose()).await {
                Revocation::Revoked => {
                    tracing::info!(attempt, "refresh token revoked after retrying");
                    return;
                }
                Revocation::Refused { reason } => {
                    tracing::warn!(%reason, "refresh token revocation refused");
                    return;
                }
                Revocation::Retry { after, reason } => {
                    tracing::warn!(attempt, %reason, "refresh token revocation failed; will retry");
                    wait = after.max(wait * 2);
                }
            }
        }
        tracing::error!(
            "refresh token revocation gave up; the token lives until it expires at the OP"
        );
    });
}

/// Revokes the refresh tokens of the sessions a back-channel logout ended, so that a stolen
/// refresh token does not outlive the logout. Plug it into the receiver with
/// [`Receiver::with_after_logout`](crate::receiver::Receiver::with_after_logout); it reads the
/// tokens from the session store's records and removes the records when done.
#[derive(Debug, Clone)]
pub struct RefreshTokenRevocation<B> {
    records: B,
    issuers: HashMap<String, (Arc<Provider>, Vec<Client>)>,
}

impl<B: RecordStore> RefreshTokenRevocation<B> {
    /// Revocation reading session records from `records` (the session store's backend).
    pub fn new(records: B) -> Self {
        Self {
            records,
            issuers: HashMap::new(),
        }
    }

    /// Revoke tokens of `provider`'s sessions, authenticating as the client that obtained them
    /// (the login's `client_id`; the first client when the login names none).
    #[must_use]
    pub fn with_issuer(mut self, provider: Arc<Provider>, clients: Vec<Client>) -> Self {
        self.issuers
            .insert(provider.issuer().to_owned(), (provider, clients));
        self
    }
}

impl<B: RecordStore> AfterLogout for RefreshTokenRevocation<B> {
    fn sessions_ended(&self, issuer: &str, session_ids: &[String]) {
        let Some((provider, clients)) = self.issuers.get(issuer).cloned() else {
            return;
        };
        let records = self.records.clone();
        let ids = session_ids.to_vec();
        tokio::spawn(async move {
            for id in ids {
                let data = match records.get_record(&id).await {
                    Ok(Some(data)) => data,
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read an ended session to revoke its refresh token");
                        continue;
                    }
                };
                let login = serde_json::from_slice(&data)
                    .ok()
                    .and_then(|record| login_of(&record).ok().flatten());
                let Some(login) = login else { continue };
                let Some(token) = login.refresh_token else {
                    continue;
                };
                let client = login
                    .client_id
                    .as_deref()
                    .and_then(|wanted| clients.iter().find(|c| c.id == wanted))
                    .or_else(|| clients.first());
                let Some(client) = client else { continue };
                match revoke_refresh_token(&provider, client, token.expose()).await {
                    Revocation::Revoked => {
                        tracing::info!("refresh token of an ended session revoked")
                    }
                    Revocation::Retry { reason, .. } => {
                        tracing::warn!(%reason, "refresh token revocation failed; retrying in the background");
                        retry_in_background(Arc::clone(&provider), client.clone(), token);
                    }
                    Revocation::Refused { reason } => {
                        tracing::warn!(%reason, "refresh token revocation refused by the OP");
                    }
                }
                if let Err(error) = records.delete_record(&id).await {
                    tracing::warn!(%error, "cannot remove an ended session's record");
                }
            }
        });
    }
}
