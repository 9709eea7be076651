//! The admin API's tokens: `admin_tokens` (flag, variable or file), each an operator's, acting
//! on every configured issuer; and `[[admin]]` tables, tokens scoped to one issuer and,
//! optionally, one customer (a help desk that serves one customer). Both are fields of
//! [`InputsConfig`](crate::inputs::InputsConfig).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::issuers::IssuerSettings;
use crate::config::senders;
use crate::config::{Check, ConfigError, Secret};

/// One `[[admin]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ScopedAdminConfig {
    /// Its bearer tokens (32 characters or more each).
    pub tokens: Vec<Secret>,
    /// The configured issuer whose sessions it acts on.
    pub issuer: String,
    /// Only the users of this customer (as the applications' logins recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// An admin token, validated, with what it may act on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdminToken {
    /// The token.
    pub token: SecretString,
    /// Its issuer (`None`: every configured issuer).
    pub issuer: Option<String>,
    /// Its customer, if it is scoped to one.
    pub customer: Option<String>,
}

impl AdminToken {
    /// What the token may act on.
    pub fn scope(&self) -> crate::core::Scope {
        match &self.issuer {
            Some(issuer) => {
                crate::core::Scope::issuer(issuer.clone()).with_customer(self.customer.clone())
            }
            None => crate::core::Scope::any_issuer(),
        }
    }
}

fn long_enough(key: &str, tokens: &[Secret], check: &Check<'_>) -> Result<(), ConfigError> {
    if tokens.iter().any(|t| t.expose().len() < 32) {
        return Err(check.invalid(
            key,
            "an admin token must be at least 32 characters (e.g. `openssl rand -hex 32`)",
        ));
    }
    Ok(())
}

/// Validate `admin_tokens` (each acting on every configured issuer) and the `[[admin]]`
/// tables: each token long enough to be a secret, each scoped one naming a configured issuer.
pub fn validate(
    admin_tokens: &[Secret],
    admin: &[ScopedAdminConfig],
    issuers: &[IssuerSettings],
    check: &mut Check<'_>,
) -> Result<Vec<AdminToken>, ConfigError> {
    long_enough("admin_tokens", admin_tokens, check)?;
    let mut tokens: Vec<AdminToken> = admin_tokens
        .iter()
        .map(|t| AdminToken {
            token: t.to_secret_string(),
            issuer: None,
            customer: None,
        })
        .collect();
    for (i, scoped) in admin.iter().enumerate() {
        let key = |name: &str| format!("admin[{i}].{name}");
        if scoped.tokens.is_empty() {
            return Err(check.invalid(&key("tokens"), "at least one token is required"));
        }
        long_enough(&key("tokens"), &scoped.tokens, check)?;
        if !issuers.iter().any(|s| s.policy.issuer == scoped.issuer) {
            return Err(check.invalid(
                &key("issuer"),
                format!("{} is not a configured issuer", scoped.issuer),
            ));
        }
        let customer = senders::customer(&key("customer"), scoped.customer.as_ref(), check)?;
        tokens.extend(scoped.tokens.iter().map(|t| AdminToken {
            token: t.to_secret_string(),
            issuer: Some(scoped.issuer.clone()),
            customer: customer.clone(),
        }));
    }
    Ok(tokens)
}
