//! The inputs besides back-channel logout: the admin API's tokens, Shared Signals
//! transmitters, FusionAuth webhooks. Each names issuers of `[[issuers]]`, so each is checked
//! against the validated issuers.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use reqwest::Url;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::issuers::{IssuerSettings, parse_algorithms};
use super::{Check, ConfigError, Secret};
use crate::provider::{ProviderSettings, check_transport};

/// The admin API, as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AdminConfig {
    /// Bearer tokens of the admin API; none: the admin API is off.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub admin_tokens: Vec<Secret>,
}

impl AdminConfig {
    /// Each token must be long enough to be a secret.
    pub fn validate(&self, check: &mut Check<'_>) -> Result<Vec<SecretString>, ConfigError> {
        if self.admin_tokens.iter().any(|t| t.expose().len() < 32) {
            return Err(check.invalid(
                "admin_tokens",
                "an admin token must be at least 32 characters (e.g. `openssl rand -hex 32`)",
            ));
        }
        Ok(self
            .admin_tokens
            .iter()
            .map(Secret::to_secret_string)
            .collect())
    }
}

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
}

fn default_max_event_age() -> u64 {
    crate::core::DEFAULT_EVENT_MAX_AGE.as_secs()
}

/// The longest event age accepted ([`MAX_EVENT_MAX_AGE`](crate::core::MAX_EVENT_MAX_AGE)).
const MAX_EVENT_AGE: u64 = crate::core::MAX_EVENT_MAX_AGE.as_secs();

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
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
    /// How its keys are fetched.
    pub provider: ProviderSettings,
}

/// A sender's issuer URL: a URL, `https` (or allowed plain `http`; a warning says so).
fn sender_url(
    key: &str,
    issuer: &str,
    what: &str,
    allow_insecure_http: bool,
    check: &mut Check<'_>,
) -> Result<(), ConfigError> {
    let url = Url::parse(issuer)
        .map_err(|e| check.invalid(key, format!("{issuer:?} is not a URL: {e}")))?;
    if check_transport(&url, allow_insecure_http).map_err(|m| check.invalid(key, m))? {
        check.warn(format!("{what} {issuer} uses plain http"));
    }
    Ok(())
}

/// The configured issuer whose sessions a sender's subjects name.
fn subject_issuer_check(
    key: &dyn Fn(&str) -> String,
    issuer: &str,
    issuers: &[IssuerSettings],
    whose: &str,
    check: &mut Check<'_>,
) -> Result<(), ConfigError> {
    if issuers.iter().any(|s| s.policy.issuer == issuer) {
        return Ok(());
    }
    Err(check.invalid(
        &key("subject_issuer"),
        format!(
            "{issuer} is not a configured issuer: set subject_issuer to the [[issuers]] entry \
             whose sessions {whose} subjects name"
        ),
    ))
}

/// Validate the transmitters; each names sessions of a configured issuer.
pub fn validate_transmitters(
    transmitters: &[TransmitterConfig],
    issuers: &[IssuerSettings],
    allow_insecure_http: bool,
    check: &mut Check<'_>,
) -> Result<Vec<TransmitterSettings>, ConfigError> {
    let mut valid = Vec::with_capacity(transmitters.len());
    for (i, t) in transmitters.iter().enumerate() {
        let key = |name: &str| format!("transmitters[{i}].{name}");
        sender_url(
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
        subject_issuer_check(&key, &subject_issuer, issuers, "this transmitter's", check)?;
        if t.max_event_age_secs == 0 || t.max_event_age_secs > MAX_EVENT_AGE {
            return Err(check.invalid(
                &key("max_event_age_secs"),
                format!("must be between 1 and {MAX_EVENT_AGE} seconds (6 days)"),
            ));
        }
        valid.push(TransmitterSettings {
            issuer: t.issuer.clone(),
            audiences: t.audiences.clone(),
            algorithms,
            subject_issuer,
            email_is_sub: t.email_is_sub,
            max_event_age: Duration::from_secs(t.max_event_age_secs),
            provider: ProviderSettings::default().with_allow_insecure_http(allow_insecure_http),
        });
    }
    Ok(valid)
}

/// The `[fusionauth]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FusionAuthConfig {
    /// HMAC secrets of the webhook signing key (none: RSA/EC signatures only, verified with the
    /// tenants' issuers' keys).
    #[serde(default)]
    pub hmac_secrets: Vec<Secret>,
    /// FusionAuth tenants and their OIDC issuers.
    #[serde(default)]
    pub tenants: Vec<FusionAuthTenant>,
    /// User action ids or names that prevent login: their `user.action` start revokes the user.
    #[serde(default)]
    pub lock_actions: Vec<String>,
    /// How old an event may be, in seconds (its signature's `iat`, its `createInstant`); at most
    /// 6 days (event ids are remembered 7).
    #[serde(default = "default_max_event_age")]
    pub max_event_age_secs: u64,
}

impl Default for FusionAuthConfig {
    fn default() -> Self {
        Self {
            hmac_secrets: Vec::new(),
            tenants: Vec::new(),
            lock_actions: Vec::new(),
            max_event_age_secs: default_max_event_age(),
        }
    }
}

/// One FusionAuth tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FusionAuthTenant {
    /// FusionAuth's tenant id.
    pub tenant_id: String,
    /// The tenant's OIDC issuer, as in `[[issuers]]`.
    pub issuer: String,
}

/// FusionAuth webhooks, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FusionAuthSettings {
    /// HMAC secrets.
    pub hmac_secrets: Vec<SecretString>,
    /// (tenant id, issuer).
    pub tenants: Vec<(String, String)>,
    /// Locking user actions.
    pub lock_actions: Vec<String>,
    /// How old an event may be.
    pub max_event_age: Duration,
}

impl FusionAuthConfig {
    /// Every tenant names a configured issuer; secrets are long enough.
    pub fn validate(
        &self,
        issuers: &[IssuerSettings],
        check: &mut Check<'_>,
    ) -> Result<FusionAuthSettings, ConfigError> {
        if self.tenants.is_empty() {
            return Err(check.invalid(
                "fusionauth.tenants",
                "at least one tenant is required: { tenant_id = \"…\", issuer = \"…\" }",
            ));
        }
        let mut tenants = Vec::with_capacity(self.tenants.len());
        for (i, t) in self.tenants.iter().enumerate() {
            if !issuers.iter().any(|s| s.policy.issuer == t.issuer) {
                return Err(check.invalid(
                    &format!("fusionauth.tenants[{i}].issuer"),
                    format!(
                        "{} is not a configured issuer (add it to [[issuers]])",
                        t.issuer
                    ),
                ));
            }
            if t.tenant_id.trim().is_empty() {
                return Err(check.invalid(
                    &format!("fusionauth.tenants[{i}].tenant_id"),
                    "cannot be empty",
                ));
            }
            tenants.push((t.tenant_id.clone(), t.issuer.clone()));
        }
        if let Some(short) = self.hmac_secrets.iter().position(|s| s.expose().len() < 32) {
            return Err(check.invalid(
                &format!("fusionauth.hmac_secrets[{short}]"),
                "an HMAC secret must be at least 32 characters",
            ));
        }
        if self.max_event_age_secs == 0 || self.max_event_age_secs > MAX_EVENT_AGE {
            return Err(check.invalid(
                "fusionauth.max_event_age_secs",
                format!("must be between 1 and {MAX_EVENT_AGE} seconds (6 days)"),
            ));
        }
        Ok(FusionAuthSettings {
            max_event_age: Duration::from_secs(self.max_event_age_secs),
            hmac_secrets: self
                .hmac_secrets
                .iter()
                .map(Secret::to_secret_string)
                .collect(),
            tenants,
            lock_actions: self.lock_actions.clone(),
        })
    }
}

/// The SCIM clients, as written: `scim_tokens` for the issuer given by `issuer`, and
/// `[[scim]]` tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ScimConfig {
    /// Bearer tokens of a SCIM client for the issuer given by `issuer` (flags, environment).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scim_tokens: Vec<Secret>,
    /// SCIM clients, each scoped to one issuer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scim: Vec<ScimClientConfig>,
}

/// One `[[scim]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ScimClientConfig {
    /// Its bearer tokens (32 characters or more each).
    pub tokens: Vec<Secret>,
    /// The configured issuer whose users it provisions.
    pub issuer: String,
    /// The attribute path mapped to the OIDC `sub` (default `externalId`).
    #[serde(default = "default_sub_attribute")]
    pub sub_attribute: String,
}

fn default_sub_attribute() -> String {
    "externalId".into()
}

/// A SCIM client, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScimSettings {
    /// Its bearer tokens.
    pub tokens: Vec<SecretString>,
    /// The issuer whose users it provisions.
    pub issuer: String,
    /// The attribute mapped to `sub`.
    pub sub_attribute: String,
}

impl ScimConfig {
    /// Each client names a configured issuer and has long tokens; `single_issuer` is the
    /// issuer `scim_tokens` are for.
    pub fn validate(
        &self,
        single_issuer: Option<&str>,
        issuers: &[IssuerSettings],
        check: &mut Check<'_>,
    ) -> Result<Vec<ScimSettings>, ConfigError> {
        let mut clients = Vec::new();
        if !self.scim_tokens.is_empty() {
            let Some(issuer) = single_issuer else {
                return Err(check.invalid(
                    "scim_tokens",
                    "scim_tokens are for the issuer given by issuer, which is not set; use \
                     [[scim]] tables to name each client's issuer",
                ));
            };
            clients.push((
                "scim_tokens".to_owned(),
                &self.scim_tokens,
                issuer,
                "externalId",
            ));
        }
        for (i, client) in self.scim.iter().enumerate() {
            clients.push((
                format!("scim[{i}]"),
                &client.tokens,
                client.issuer.as_str(),
                client.sub_attribute.as_str(),
            ));
        }
        let mut valid: Vec<ScimSettings> = Vec::with_capacity(clients.len());
        for (key, tokens, issuer, sub_attribute) in clients {
            let tokens_key = if key == "scim_tokens" {
                key.clone()
            } else {
                format!("{key}.tokens")
            };
            if tokens.is_empty() {
                return Err(check.invalid(&tokens_key, "at least one token is required"));
            }
            if tokens.iter().any(|t| t.expose().len() < 32) {
                return Err(check.invalid(
                    &tokens_key,
                    "a SCIM token must be at least 32 characters (e.g. `openssl rand -hex 32`)",
                ));
            }
            let taken = valid.iter().any(|other| {
                other.tokens.iter().any(|o| {
                    tokens
                        .iter()
                        .any(|t| secrecy::ExposeSecret::expose_secret(o) == t.expose())
                })
            });
            if taken {
                return Err(check.invalid(
                    &tokens_key,
                    "each SCIM client needs tokens of its own (this one is another client's)",
                ));
            }
            if !issuers.iter().any(|s| s.policy.issuer == issuer) {
                return Err(check.invalid(
                    &format!("{key}.issuer"),
                    format!("{issuer} is not a configured issuer"),
                ));
            }
            if sub_attribute.trim().is_empty() {
                return Err(check.invalid(
                    &format!("{key}.sub_attribute"),
                    "must name an attribute (externalId, userName, or a path)",
                ));
            }
            valid.push(ScimSettings {
                tokens: tokens.iter().map(Secret::to_secret_string).collect(),
                issuer: issuer.to_owned(),
                sub_attribute: sub_attribute.to_owned(),
            });
        }
        Ok(valid)
    }
}

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
    /// How its keys are fetched.
    pub provider: ProviderSettings,
}

/// Validate the Universal Logout senders.
pub fn validate_universal_logout(
    senders: &[UniversalLogoutConfig],
    issuers: &[IssuerSettings],
    allow_insecure_http: bool,
    check: &mut Check<'_>,
) -> Result<Vec<UniversalLogoutSettings>, ConfigError> {
    let mut valid = Vec::with_capacity(senders.len());
    for (i, s) in senders.iter().enumerate() {
        let key = |name: &str| format!("universal_logout[{i}].{name}");
        sender_url(
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
        subject_issuer_check(&key, &subject_issuer, issuers, "this org's", check)?;
        valid.push(UniversalLogoutSettings {
            issuer: s.issuer.clone(),
            client_id: s.client_id.clone(),
            audience: s.audience.clone(),
            algorithms,
            subject_issuer,
            email_is_sub: s.email_is_sub,
            provider: ProviderSettings::default().with_allow_insecure_http(allow_insecure_http),
        });
    }
    Ok(valid)
}
