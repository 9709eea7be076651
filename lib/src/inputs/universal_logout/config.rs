//! The `[[universal_logout]]` tables: Okta orgs (or other senders of the Global Token
//! Revocation profile) allowed to log users out.

use jsonwebtoken::Algorithm;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::config::issuers::{IssuerSettings, parse_algorithms};
use crate::config::senders::{self, default_algorithms};
use crate::config::{Check, ConfigError};
use crate::provider::ProviderSettings;

/// One `[[universal_logout]]` table: an Okta org allowed to log users out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct UniversalLogoutConfig {
    /// The org's issuer URL (its JWTs' `iss`; keys from its discovery document).
    pub issuer: String,
    /// The application's client id at the org (its JWTs' `sub`).
    pub client_id: String,
    /// This endpoint's URL as registered at the org (its JWTs' `aud`), e.g.
    /// `https://logout.example.com/global-token-revocation`.
    pub audience: String,
    /// Algorithms its JWTs may use.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The configured issuer whose sessions its subjects name (default: `issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_issuer: Option<String>,
    /// An `email` subject is the user's `sub` (default false: such subjects are refused).
    #[serde(default)]
    pub email_is_sub: bool,
    /// Only the users of this customer (as the applications' logins recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// An Okta org, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UniversalLogoutSettings {
    /// The org's issuer URL.
    pub issuer: String,
    /// The application's client id there.
    pub client_id: String,
    /// This endpoint's URL as registered.
    pub audience: String,
    /// Allowed algorithms.
    pub algorithms: Vec<Algorithm>,
    /// The issuer of the sessions its subjects name.
    pub subject_issuer: String,
    /// Whether `email` subjects are `sub`s.
    pub email_is_sub: bool,
    /// Its customer, if it is scoped to one.
    pub customer: Option<String>,
    /// How its keys are fetched.
    pub provider: ProviderSettings,
}

/// Validate the Universal Logout senders.
pub fn validate(
    senders: &[UniversalLogoutConfig],
    issuers: &[IssuerSettings],
    allow_insecure_http: bool,
    check: &mut Check<'_>,
) -> Result<Vec<UniversalLogoutSettings>, ConfigError> {
    let mut valid = Vec::with_capacity(senders.len());
    for (i, s) in senders.iter().enumerate() {
        let key = |name: &str| format!("universal_logout[{i}].{name}");
        senders::sender_url(
            &key("issuer"),
            &s.issuer,
            "Universal Logout org",
            allow_insecure_http,
            check,
        )?;
        if s.client_id.is_empty() {
            return Err(check.invalid(
                &key("client_id"),
                "the application's client id at the org is required",
            ));
        }
        let audience = Url::parse(&s.audience).map_err(|e| {
            check.invalid(
                &key("audience"),
                format!("{:?} is not a URL: {e}", s.audience),
            )
        })?;
        if audience.query().is_some() || audience.fragment().is_some() {
            return Err(check.invalid(
                &key("audience"),
                "the endpoint URL as registered at the org, without query or fragment",
            ));
        }
        let algorithms = parse_algorithms(&key("algorithms"), &s.algorithms, check)?;
        let subject_issuer = s.subject_issuer.clone().unwrap_or_else(|| s.issuer.clone());
        senders::subject_issuer(
            &key("subject_issuer"),
            &subject_issuer,
            issuers,
            "this org's",
            check,
        )?;
        valid.push(UniversalLogoutSettings {
            issuer: s.issuer.clone(),
            client_id: s.client_id.clone(),
            audience: s.audience.clone(),
            algorithms,
            subject_issuer,
            email_is_sub: s.email_is_sub,
            customer: senders::customer(&key("customer"), s.customer.as_ref(), check)?,
            provider: ProviderSettings::default().with_allow_insecure_http(allow_insecure_http),
        });
    }
    Ok(valid)
}
