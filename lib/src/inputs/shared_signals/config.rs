//! The `[[transmitters]]` tables: Shared Signals transmitters whose SETs are accepted.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::config::issuers::{IssuerSettings, parse_algorithms};
use crate::config::senders::{self, default_algorithms, default_max_event_age};
use crate::config::{Check, ConfigError};
use crate::provider::ProviderSettings;

/// One `[[transmitters]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TransmitterConfig {
    /// The transmitter's issuer (`iss` of its SETs); keys from
    /// `<issuer>/.well-known/ssf-configuration`.
    pub issuer: String,
    /// The `aud` values of SETs meant for this receiver.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Algorithms its SETs may use.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The configured issuer whose sessions `opaque`, `email` and `session` subjects name
    /// (default: the transmitter's issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_issuer: Option<String>,
    /// An `email` subject is the user's `sub` (default false: such subjects are refused).
    #[serde(default)]
    pub email_is_sub: bool,
    /// How old a SET's `iat` may be, in seconds (at most 6 days: event ids are remembered 7).
    #[serde(default = "default_max_event_age")]
    pub max_event_age_secs: u64,
    /// Only the users of this customer (as the applications' logins recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// A Shared Signals transmitter, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransmitterSettings {
    /// Its issuer identifier.
    pub issuer: String,
    /// The `aud` values naming this receiver.
    pub audiences: Vec<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<Algorithm>,
    /// The issuer of the sessions its subjects name.
    pub subject_issuer: String,
    /// Whether `email` subjects are `sub`s.
    pub email_is_sub: bool,
    /// How old a SET may be.
    pub max_event_age: Duration,
    /// Its customer, if it is scoped to one.
    pub customer: Option<String>,
    /// How its keys are fetched.
    pub provider: ProviderSettings,
}

/// Validate the transmitters; each names sessions of a configured issuer.
pub fn validate(
    transmitters: &[TransmitterConfig],
    issuers: &[IssuerSettings],
    allow_insecure_http: bool,
    check: &mut Check<'_>,
) -> Result<Vec<TransmitterSettings>, ConfigError> {
    let mut valid = Vec::with_capacity(transmitters.len());
    for (i, t) in transmitters.iter().enumerate() {
        let key = |name: &str| format!("transmitters[{i}].{name}");
        senders::sender_url(
            &key("issuer"),
            &t.issuer,
            "transmitter",
            allow_insecure_http,
            check,
        )?;
        if t.audiences.is_empty() {
            return Err(check.invalid(
                &key("audiences"),
                "at least one audience is required: the aud its SETs carry for this receiver",
            ));
        }
        let algorithms = parse_algorithms(&key("algorithms"), &t.algorithms, check)?;
        let subject_issuer = t.subject_issuer.clone().unwrap_or_else(|| t.issuer.clone());
        senders::subject_issuer(
            &key("subject_issuer"),
            &subject_issuer,
            issuers,
            "this transmitter's",
            check,
        )?;
        let max_age = senders::event_age(&key("max_event_age_secs"), t.max_event_age_secs, check)?;
        valid.push(TransmitterSettings {
            issuer: t.issuer.clone(),
            audiences: t.audiences.clone(),
            algorithms,
            subject_issuer,
            email_is_sub: t.email_is_sub,
            max_event_age: Duration::from_secs(max_age),
            customer: senders::customer(&key("customer"), t.customer.as_ref(), check)?,
            provider: ProviderSettings::default().with_allow_insecure_http(allow_insecure_http),
        });
    }
    Ok(valid)
}
