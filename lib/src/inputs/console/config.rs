//! The console's section, `[console]`: how administrators sign in through the OP (the
//! console's own client there, and the claim that makes a user an administrator) and how long
//! a console sign-in lasts. The break-glass sign-in takes the admin API's tokens; with neither
//! those nor an OIDC client, the console is off.

use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::config::senders;
use crate::config::{Check, ConfigError, Secret};
use crate::provider::check_transport;

/// How long a console sign-in lasts unless set: a working day.
const DEFAULT_SESSION_MINUTES: u64 = 8 * 60;

/// `[console]`, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ConsoleConfig {
    /// The OP administrators sign in at (the workforce IdP; any issuer, configured or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The console's client there (authorization code flow with PKCE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Its secret (`client_secret_basic`); none for a public client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// The console's redirect URI as registered: `<where the admin listener is reached>/console/callback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// The ID token claim that must hold one of `admin_values` (a string or an array of them).
    #[serde(default = "default_claim")]
    pub admin_claim: String,
    /// The values of `admin_claim` that make a user an administrator (e.g. a group's name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_values: Vec<String>,
    /// Minutes a sign-in lasts.
    #[serde(default = "default_session_minutes")]
    pub session_minutes: u64,
    /// Whether the console's cookies are `Secure` (and named `__Secure-…`): true unless the
    /// console is reached over plain http (on loopback, or behind `allow_insecure_http`).
    #[serde(default = "default_secure_cookies")]
    pub secure_cookies: bool,
}

fn default_secure_cookies() -> bool {
    true
}

fn default_claim() -> String {
    "groups".into()
}

fn default_session_minutes() -> u64 {
    DEFAULT_SESSION_MINUTES
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            client_id: None,
            client_secret: None,
            redirect_uri: None,
            admin_claim: default_claim(),
            admin_values: Vec::new(),
            session_minutes: DEFAULT_SESSION_MINUTES,
            secure_cookies: true,
        }
    }
}

/// The console's sign-in through the OP, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsoleOidc {
    /// The OP.
    pub issuer: String,
    /// The console's client.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Option<Secret>,
    /// Its redirect URI.
    pub redirect_uri: Url,
    /// The claim, and the values of it that admit.
    pub admin_claim: String,
    /// See `admin_claim`.
    pub admin_values: Vec<String>,
    /// Whether plain `http` is allowed for the OP.
    pub allow_insecure_http: bool,
}

/// `[console]`, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsoleSettings {
    /// Sign-in through the OP, when configured.
    pub oidc: Option<ConsoleOidc>,
    /// How long a sign-in lasts.
    pub session: Duration,
    /// Whether the cookies are `Secure`.
    pub secure_cookies: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            oidc: None,
            session: Duration::from_secs(DEFAULT_SESSION_MINUTES * 60),
            secure_cookies: true,
        }
    }
}

impl ConsoleConfig {
    /// Validate: an OIDC sign-in names all it needs or nothing; a session lasts 1 minute to a
    /// week.
    pub fn validate(
        &self,
        allow_insecure_http: bool,
        check: &mut Check<'_>,
    ) -> Result<ConsoleSettings, ConfigError> {
        if self.session_minutes == 0 || self.session_minutes > 7 * 24 * 60 {
            return Err(check.invalid(
                "console.session_minutes",
                "must be between 1 and 10080 (a week)",
            ));
        }
        let session = Duration::from_secs(self.session_minutes * 60);
        let oidc = match (&self.issuer, &self.client_id, &self.redirect_uri) {
            (None, None, None) => {
                if self.client_secret.is_some() || !self.admin_values.is_empty() {
                    return Err(check.invalid(
                        "console.issuer",
                        "the console's OIDC sign-in needs issuer, client_id and redirect_uri",
                    ));
                }
                None
            }
            (Some(issuer), Some(client_id), Some(redirect_uri)) => {
                senders::sender_url(
                    "console.issuer",
                    issuer,
                    "the console's OP",
                    allow_insecure_http,
                    check,
                )?;
                if client_id.is_empty() {
                    return Err(check.invalid("console.client_id", "must not be empty"));
                }
                let redirect_uri = Url::parse(redirect_uri)
                    .ok()
                    .filter(|u| {
                        check_transport(u, allow_insecure_http).is_ok()
                            && u.path() == "/console/callback"
                    })
                    .ok_or_else(|| {
                        check.invalid(
                            "console.redirect_uri",
                            "must be an https URL (http only on loopback or with \
                             allow_insecure_http) ending in /console/callback, where browsers \
                             reach the admin listener",
                        )
                    })?;
                if self.admin_claim.is_empty() || self.admin_values.is_empty() {
                    return Err(check.invalid(
                        "console.admin_values",
                        "name the values of admin_claim (e.g. a group) that make a user an \
                         administrator: without them nobody could sign in through the OP",
                    ));
                }
                Some(ConsoleOidc {
                    issuer: issuer.clone(),
                    client_id: client_id.clone(),
                    client_secret: self.client_secret.clone(),
                    redirect_uri,
                    admin_claim: self.admin_claim.clone(),
                    admin_values: self.admin_values.clone(),
                    allow_insecure_http,
                })
            }
            _ => {
                return Err(check.invalid(
                    "console.issuer",
                    "the console's OIDC sign-in needs issuer, client_id and redirect_uri",
                ));
            }
        };
        Ok(ConsoleSettings {
            oidc,
            session,
            secure_cookies: self.secure_cookies,
        })
    }
}
