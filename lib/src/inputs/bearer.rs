//! The bearer tokens an input accepts (the admin API's, each SCIM client's): kept as SHA-256
//! digests, a presented token compared with every one in constant time (so the time does not
//! say which one, if any, matched), each named in audit lines by a short fingerprint of its
//! digest, never by itself.

use aws_lc_rs::digest;
use secrecy::{ExposeSecret as _, SecretString};

use crate::sys::secrets_equal;

/// Accepted tokens, each with what it grants (`T`).
pub(crate) struct BearerTokens<T> {
    tokens: Vec<Accepted<T>>,
}

struct Accepted<T> {
    digest: Vec<u8>,
    fingerprint: String,
    grants: T,
}

impl<T: Clone> BearerTokens<T> {
    /// Tokens and what each grants.
    pub(crate) fn new<'a>(tokens: impl IntoIterator<Item = (&'a SecretString, T)>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(token, grants)| {
                    let digest = digest::digest(&digest::SHA256, token.expose_secret().as_bytes());
                    Accepted {
                        fingerprint: digest
                            .as_ref()
                            .iter()
                            .take(4)
                            .map(|b| format!("{b:02x}"))
                            .collect(),
                        digest: digest.as_ref().to_vec(),
                        grants,
                    }
                })
                .collect(),
        }
    }

    /// What the token with this fingerprint grants, while it is still accepted (a console
    /// sign-in made with it checks this on every request).
    #[cfg(feature = "server")]
    pub(crate) fn by_fingerprint(&self, fingerprint: &str) -> Option<T> {
        self.tokens
            .iter()
            .find(|t| t.fingerprint == fingerprint)
            .map(|t| t.grants.clone())
    }

    /// What a presented token grants, and its fingerprint; `None` when it is not accepted.
    pub(crate) fn find(&self, presented: &str) -> Option<(String, T)> {
        let presented = digest::digest(&digest::SHA256, presented.as_bytes());
        let mut found = None;
        for token in &self.tokens {
            if secrets_equal(presented.as_ref(), &token.digest) {
                found = Some((token.fingerprint.clone(), token.grants.clone()));
            }
        }
        found
    }
}
