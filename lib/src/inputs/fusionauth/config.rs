//! The `[fusionauth]` table: webhook secrets, tenants (each with its issuer and, optionally,
//! customer) and the user actions that lock.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::issuers::IssuerSettings;
use crate::config::senders::{self, default_max_event_age};
use crate::config::{Check, ConfigError, Secret};

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
    /// Only the users of this customer (as the applications' logins recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// A FusionAuth tenant, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TenantSettings {
    /// FusionAuth's tenant id.
    pub tenant_id: String,
    /// Its issuer.
    pub issuer: String,
    /// Its customer, if it is scoped to one.
    pub customer: Option<String>,
}

/// FusionAuth webhooks, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FusionAuthSettings {
    /// HMAC secrets.
    pub hmac_secrets: Vec<SecretString>,
    /// The tenants.
    pub tenants: Vec<TenantSettings>,
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
            let key = |name: &str| format!("fusionauth.tenants[{i}].{name}");
            if !issuers.iter().any(|s| s.policy.issuer == t.issuer) {
                return Err(check.invalid(
                    &key("issuer"),
                    format!(
                        "{} is not a configured issuer (add it to [[issuers]])",
                        t.issuer
                    ),
                ));
            }
            if t.tenant_id.trim().is_empty() {
                return Err(check.invalid(&key("tenant_id"), "cannot be empty"));
            }
            tenants.push(TenantSettings {
                tenant_id: t.tenant_id.clone(),
                issuer: t.issuer.clone(),
                customer: senders::customer(&key("customer"), t.customer.as_ref(), check)?,
            });
        }
        if let Some(short) = self.hmac_secrets.iter().position(|s| s.expose().len() < 32) {
            return Err(check.invalid(
                &format!("fusionauth.hmac_secrets[{short}]"),
                "an HMAC secret must be at least 32 characters",
            ));
        }
        let max_age = senders::event_age(
            "fusionauth.max_event_age_secs",
            self.max_event_age_secs,
            check,
        )?;
        Ok(FusionAuthSettings {
            max_event_age: Duration::from_secs(max_age),
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
