//! What the inputs' configuration sections share: a sender's issuer URL, the configured issuer
//! whose sessions it names, its customer, and the defaults of event ages and algorithms. Each
//! input owns its own section (`inputs/<name>/config.rs`); these are the checks they have in
//! common, so that every sender is held to the same rules.

use reqwest::Url;

use super::issuers::IssuerSettings;
use super::{Check, ConfigError};
use crate::provider::check_transport;

/// The default event age, in seconds (a day).
pub(crate) fn default_max_event_age() -> u64 {
    crate::core::DEFAULT_EVENT_MAX_AGE.as_secs()
}

/// The longest event age accepted ([`MAX_EVENT_MAX_AGE`](crate::core::MAX_EVENT_MAX_AGE)).
pub(crate) const MAX_EVENT_AGE: u64 = crate::core::MAX_EVENT_MAX_AGE.as_secs();

/// RS256, the default algorithm of senders' signatures.
pub(crate) fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}

/// An event age between 1 s and [`MAX_EVENT_AGE`].
pub(crate) fn event_age(key: &str, secs: u64, check: &Check<'_>) -> Result<u64, ConfigError> {
    if secs == 0 || secs > MAX_EVENT_AGE {
        return Err(check.invalid(
            key,
            format!("must be between 1 and {MAX_EVENT_AGE} seconds (6 days)"),
        ));
    }
    Ok(secs)
}

/// A sender's issuer URL: a URL, `https` (or allowed plain `http`; a warning says so).
pub(crate) fn sender_url(
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
pub(crate) fn subject_issuer(
    key: &str,
    issuer: &str,
    issuers: &[IssuerSettings],
    whose: &str,
    check: &Check<'_>,
) -> Result<(), ConfigError> {
    if issuers.iter().any(|s| s.policy.issuer == issuer) {
        return Ok(());
    }
    Err(check.invalid(
        key,
        format!(
            "{issuer} is not a configured issuer: set it to the [[issuers]] entry whose \
             sessions {whose} subjects name"
        ),
    ))
}

/// The longest customer name accepted.
const MAX_CUSTOMER: usize = 128;

/// A sender's `customer`: when set, it reaches only the users whose login recorded it.
pub(crate) fn customer(
    key: &str,
    customer: Option<&String>,
    check: &Check<'_>,
) -> Result<Option<String>, ConfigError> {
    match customer {
        None => Ok(None),
        Some(c) if c.trim().is_empty() || c.len() > MAX_CUSTOMER => Err(check.invalid(
            key,
            format!(
                "a customer is a name of 1 to {MAX_CUSTOMER} characters, as the applications' \
                 session policy rules record it"
            ),
        )),
        Some(c) => Ok(Some(c.clone())),
    }
}
