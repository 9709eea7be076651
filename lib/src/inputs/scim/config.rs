//! The SCIM clients: `scim_tokens` (one client of the issuer given by `issuer`, from flags or
//! the environment) and `[[scim]]` tables, each with its tokens, issuer, mapped attribute and,
//! optionally, customer and name.
//!
//! Several clients may share an issuer (two customers federated into one OP): each keeps its
//! own users, told apart by its name — `name`, else `customer`, else its place among the
//! issuer's unnamed clients (the first keeps the users written before clients had names).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::issuers::IssuerSettings;
use crate::config::senders;
use crate::config::{Check, ConfigError, Secret};

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
    /// Only the users of this customer (as the applications' logins recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The name its users are kept under (default: its customer). Keep it when tokens rotate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
    /// Its customer, if it is scoped to one.
    pub customer: Option<String>,
    /// The name its users are kept under among the issuer's clients (`""`: the first unnamed
    /// client, whose users predate names).
    pub name: String,
}

/// Validate `scim_tokens` (a client of `single_issuer`, the issuer given by `issuer`) and the
/// `[[scim]]` tables: each client names a configured issuer and has long tokens of its own;
/// clients of one issuer have different names.
pub fn validate(
    scim_tokens: &[Secret],
    scim: &[ScimClientConfig],
    single_issuer: Option<&str>,
    issuers: &[IssuerSettings],
    check: &mut Check<'_>,
) -> Result<Vec<ScimSettings>, ConfigError> {
    /// One client as written: where (for messages), and what.
    struct AsWritten<'a> {
        key: String,
        tokens: &'a [Secret],
        issuer: &'a str,
        sub_attribute: &'a str,
        customer: Option<&'a String>,
        name: Option<&'a String>,
    }
    let mut clients: Vec<AsWritten<'_>> = Vec::new();
    if !scim_tokens.is_empty() {
        let Some(issuer) = single_issuer else {
            return Err(check.invalid(
                "scim_tokens",
                "scim_tokens are for the issuer given by issuer, which is not set; use \
                     [[scim]] tables to name each client's issuer",
            ));
        };
        clients.push(AsWritten {
            key: "scim_tokens".to_owned(),
            tokens: scim_tokens,
            issuer,
            sub_attribute: "externalId",
            customer: None,
            name: None,
        });
    }
    for (i, client) in scim.iter().enumerate() {
        clients.push(AsWritten {
            key: format!("scim[{i}]"),
            tokens: &client.tokens,
            issuer: &client.issuer,
            sub_attribute: &client.sub_attribute,
            customer: client.customer.as_ref(),
            name: client.name.as_ref(),
        });
    }
    let mut valid: Vec<ScimSettings> = Vec::with_capacity(clients.len());
    for AsWritten {
        key,
        tokens,
        issuer,
        sub_attribute,
        customer,
        name,
    } in clients
    {
        let field = |name: &str| {
            if key == "scim_tokens" {
                key.clone()
            } else {
                format!("{key}.{name}")
            }
        };
        if tokens.is_empty() {
            return Err(check.invalid(&field("tokens"), "at least one token is required"));
        }
        if tokens.iter().any(|t| t.expose().len() < 32) {
            return Err(check.invalid(
                &field("tokens"),
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
                &field("tokens"),
                "each SCIM client needs tokens of its own (this one is another client's)",
            ));
        }
        if !issuers.iter().any(|s| s.policy.issuer == issuer) {
            return Err(check.invalid(
                &field("issuer"),
                format!("{issuer} is not a configured issuer"),
            ));
        }
        if sub_attribute.trim().is_empty() {
            return Err(check.invalid(
                &field("sub_attribute"),
                "must name an attribute (externalId, userName, or a path)",
            ));
        }
        let customer = senders::customer(&field("customer"), customer, check)?;
        if name.is_some_and(|n| n.trim().is_empty() || n.starts_with('#')) {
            return Err(check.invalid(&field("name"), "cannot be empty or start with #"));
        }
        let peers = valid.iter().filter(|c| c.issuer == issuer).count();
        let name = match name.or(customer.as_ref()) {
            Some(name) => name.clone(),
            // The issuer's first unnamed client keeps the users of the release before
            // names; the others are told apart by their place.
            None => {
                let unnamed = valid
                    .iter()
                    .filter(|c| {
                        c.issuer == issuer && (c.name.is_empty() || c.name.starts_with('#'))
                    })
                    .count();
                if unnamed > 0 {
                    check.warn(format!(
                        "{key} shares its issuer with another SCIM client without a name: \
                             their users are kept apart by their order in the file; give each \
                             a name (or customer) so that reordering cannot swap them"
                    ));
                    format!("#{}", unnamed + 1)
                } else {
                    String::new()
                }
            }
        };
        if peers > 0 && valid.iter().any(|c| c.issuer == issuer && c.name == name) {
            return Err(check.invalid(
                &field("name"),
                "another SCIM client of this issuer has this name (or customer): give each \
                     client its own",
            ));
        }
        valid.push(ScimSettings {
            tokens: tokens.iter().map(Secret::to_secret_string).collect(),
            issuer: issuer.to_owned(),
            sub_attribute: sub_attribute.to_owned(),
            customer,
            name,
        });
    }
    Ok(valid)
}
