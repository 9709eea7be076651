//! What the crate takes from the system: the clock and randomness, each read in one place.
//!
//! Validation code never reads the clock itself: it takes `now` as an argument (see
//! [`logout_token`](crate::logout_token)), and the callers that serve requests get it here.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Milliseconds since the Unix epoch, on the same clock.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .saturating_add_signed(skew_ms())
}

/// How far the tests moved this process's clock (feature `__test-clock` only).
#[cfg(feature = "__test-clock")]
static SKEW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Run this process's clock `ms` milliseconds ahead (negative: behind) of the system's, as a
/// machine whose clock is off would: for the tests of what must not depend on it. Not part of
/// the API.
#[cfg(feature = "__test-clock")]
#[doc(hidden)]
pub fn skew_clock_for_tests(ms: i64) {
    SKEW_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

fn skew_ms() -> i64 {
    #[cfg(feature = "__test-clock")]
    return SKEW_MS.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "__test-clock"))]
    0
}

/// Seconds since the epoch as an RFC 3339 UTC date-time (`2026-11-30T03:51:28Z`).
#[cfg(any(feature = "scim", feature = "server"))]
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The system's randomness is not available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct RandomUnavailable;

/// A random URL-safe string made of `bytes` random bytes (base64url, no padding).
pub fn random_id(bytes: usize) -> Result<String, RandomUnavailable> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| RandomUnavailable)?;
    Ok(URL_SAFE_NO_PAD.encode(&buf))
}

/// Whether two secrets are equal, in time that depends on their lengths only.
#[cfg(any(
    test,
    feature = "openidconnect",
    feature = "admin",
    feature = "scim",
    feature = "test-op"
))]
pub(crate) fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_url_safe_and_distinct() {
        let a = random_id(16).unwrap();
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(a, random_id(16).unwrap());
        assert!(unix_now() > 1_700_000_000);
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"abcd"));
    }
}
