//! The applications of the sessions API, `[[applications]]`: each a name, its bearer tokens, the
//! issuer its users log in at and, optionally, the one customer it serves.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::issuers::IssuerSettings;
use crate::config::senders;
use crate::config::{Check, ConfigError, Secret};

/// One `[[applications]]` table, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ApplicationConfig {
    /// Its name: letters, digits, `-` and `_` (its sessions are kept under it, so keep it).
    pub name: String,
    /// Its bearer tokens (32 characters or more each).
    pub tokens: Vec<Secret>,
    /// The configured issuer its users log in at.
    pub issuer: String,
    /// Only this customer's users (as the sessions it registers say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// An application, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApplicationSettings {
    /// Its name.
    pub name: String,
    /// Its tokens.
    pub tokens: Vec<SecretString>,
    /// Its issuer.
    pub issuer: String,
    /// Its customer.
    pub customer: Option<String>,
}

/// Validate every `[[applications]]` table.
pub fn validate(
    applications: &[ApplicationConfig],
    issuers: &[IssuerSettings],
    check: &Check<'_>,
) -> Result<Vec<ApplicationSettings>, ConfigError> {
    let mut out: Vec<ApplicationSettings> = Vec::with_capacity(applications.len());
    for (i, app) in applications.iter().enumerate() {
        let key = |name: &str| format!("applications[{i}].{name}");
        let name_ok = (1..=64).contains(&app.name.len())
            && app
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(check.invalid(&key("name"), "1 to 64 letters, digits, `-` or `_`"));
        }
        if out.iter().any(|a| a.name == app.name) {
            return Err(check.invalid(&key("name"), "another application has this name"));
        }
        if app.tokens.is_empty() || app.tokens.iter().any(|t| t.expose().len() < 32) {
            return Err(check.invalid(
                &key("tokens"),
                "at least one token, each 32 characters or more (e.g. `openssl rand -hex 32`)",
            ));
        }
        senders::subject_issuer(&key("issuer"), &app.issuer, issuers, "its sessions'", check)?;
        let customer = senders::customer(&key("customer"), app.customer.as_ref(), check)?;
        out.push(ApplicationSettings {
            name: app.name.clone(),
            tokens: app.tokens.iter().map(Secret::to_secret_string).collect(),
            issuer: app.issuer.clone(),
            customer,
        });
    }
    Ok(out)
}
