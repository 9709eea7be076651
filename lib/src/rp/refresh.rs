//! Keeping the session's tokens fresh: the refresh-token grant, and the end of the app session
//! when the OP says the refresh token is no longer valid (the user was logged out or disabled).

use secrecy::ExposeSecret as _;
use serde::Deserialize;
use tower_sessions_core::Session;

use super::{Client, RpError};
use crate::provider::Provider;
use crate::session_store::{Login, TokenSecret};

/// The outcome of [`refresh`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refreshed {
    /// New tokens are in the session.
    Refreshed,
    /// The OP refused the refresh token (`invalid_grant`): the app session was ended.
    LoggedOut,
    /// The session holds no login or no refresh token; nothing was done.
    NothingToRefresh,
    /// The OP could not be asked (network, 5xx, other errors); the session is unchanged.
    Failed(String),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    refresh_token: Option<String>,
    id_token: Option<String>,
}

/// Exchange the session's refresh token at the OP's token endpoint. New tokens replace the old
/// ones in the session; an `invalid_grant` ends the session (and its index entries).
pub async fn refresh(
    session: &Session,
    provider: &Provider,
    client: &Client,
) -> Result<Refreshed, RpError> {
    let Some(mut login) = Login::from_session(session).await? else {
        return Ok(Refreshed::NothingToRefresh);
    };
    let Some(token) = login.refresh_token.clone() else {
        return Ok(Refreshed::NothingToRefresh);
    };
    let Some(endpoint) = provider.token_endpoint() else {
        return Ok(Refreshed::Failed("the OP has no token_endpoint".into()));
    };
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", token.expose()),
    ];
    let mut request = provider.http().post(endpoint.clone());
    match &client.secret {
        Some(secret) => {
            request = request.basic_auth(
                form_encode(&client.id),
                Some(form_encode(secret.expose_secret())),
            )
        }
        None => form.push(("client_id", &client.id)),
    }
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let response = match request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Ok(Refreshed::Failed(e.to_string())),
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if status == 400 || status == 401 {
        let error = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
        if error.as_deref() == Some("invalid_grant") {
            session.flush().await?;
            return Ok(Refreshed::LoggedOut);
        }
        return Ok(Refreshed::Failed(
            error.unwrap_or_else(|| format!("HTTP {status}")),
        ));
    }
    if status != 200 {
        return Ok(Refreshed::Failed(format!("HTTP {status}")));
    }
    let Ok(tokens) = serde_json::from_str::<TokenResponse>(&text) else {
        return Ok(Refreshed::Failed("the token response is not JSON".into()));
    };
    if let Some(t) = tokens.access_token {
        login.access_token = Some(TokenSecret::new(t));
    }
    if let Some(t) = tokens.refresh_token {
        login.refresh_token = Some(TokenSecret::new(t));
    }
    if let Some(t) = tokens.id_token {
        login.id_token = Some(TokenSecret::new(t));
    }
    session
        .insert(crate::session_store::LOGIN_KEY, &login)
        .await?;
    Ok(Refreshed::Refreshed)
}

/// client_secret_basic encodes id and secret as form values before Basic (RFC 6749 §2.3.1).
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
