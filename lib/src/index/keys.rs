//! The Redis key layout, version 2 (`docs/redis-schema.md` is the contract; keep them in step),
//! and the names of version 1 that a receiver still serves during a migration.
//!
//! Every key of one issuer carries the same hash tag, `{<encoded issuer>}`, so the scripts that
//! end sessions touch a single Cluster slot and stay atomic. Components are percent-encoded so
//! that any bytes in an issuer, sid, sub or session id map to exactly one key and can never
//! forge a separator or a hash tag.
//!
//! Sessions are not keys of their own: each is one field of a *bucket* hash, chosen by the first
//! [`BUCKET_HEX`] hex digits of the SHA-1 of the encoded sub (or sid). A key costs Redis about
//! 100 bytes before it holds anything; a field of a small hash costs its bytes. That is what lets
//! one node hold ten million sessions.

/// The layout version, part of every key.
pub const LAYOUT_VERSION: &str = "v2";

/// How many hex digits of SHA-1 name a bucket: 16^4 = 65,536 buckets per issuer and family.
pub const BUCKET_HEX: usize = 4;

/// Percent-encode every byte outside `A-Z a-z 0-9 - . _ ~`, with upper-case hex digits.
///
/// This is injective, and its output never contains `:`, `{`, `}` or `%`-free look-alikes of
/// another input, so two different inputs never share a key.
pub fn encode_component(raw: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(raw.len());
    for &b in raw.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The inverse of [`encode_component`], for ids read back from Redis.
pub(crate) fn decode_component(encoded: &str) -> String {
    percent_encoding::percent_decode_str(encoded)
        .decode_utf8_lossy()
        .into_owned()
}

/// The bucket of an encoded component: the first [`BUCKET_HEX`] lower-case hex digits of its
/// SHA-1 (the scripts compute the same with `redis.sha1hex`).
pub fn bucket(encoded: &str) -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        encoded.as_bytes(),
    );
    let mut out = String::with_capacity(BUCKET_HEX);
    for byte in digest.as_ref().iter().take(BUCKET_HEX.div_ceil(2)) {
        let _ = write!(out, "{byte:02x}");
    }
    out.truncate(BUCKET_HEX);
    out
}

/// The channel the receiver announces access-token denylist markers on.
pub fn deny_channel(prefix: &str) -> String {
    format!("{prefix}{LAYOUT_VERSION}:deny")
}

/// The channel the index announces logout markers on (what ended which sessions), for the
/// session stores' in-memory view.
pub fn ended_channel(prefix: &str) -> String {
    format!("{prefix}{LAYOUT_VERSION}:ended")
}

/// The activity list: the core's audit entries, newest last, for the console (a stream).
pub(crate) fn activity_key(prefix: &str) -> String {
    format!("{prefix}{LAYOUT_VERSION}:activity")
}

/// The key of an application session's data record: `<prefix>v1:d:{<encoded id>}`. It is keyed by
/// session id alone (its own hash tag), so records spread over a Cluster. The record's format did
/// not change in version 2, so neither did its key: records survive the move.
pub(crate) fn record_key(prefix: &str, id: &str) -> String {
    format!("{prefix}v1:d:{{{}}}", encode_component(id))
}

/// The key names of one issuer.
#[derive(Debug, Clone)]
pub struct IssuerKeys {
    /// `<prefix>v2:{<iss>}:` — everything of this issuer starts with it.
    base: String,
}

impl IssuerKeys {
    /// The keys of `issuer` under `prefix`.
    pub fn new(prefix: &str, issuer: &str) -> Self {
        Self {
            base: format!("{prefix}{LAYOUT_VERSION}:{{{}}}:", encode_component(issuer)),
        }
    }

    /// `<prefix>v2:{<iss>}:`, which the scripts extend with `u:<bucket>` and `i:<bucket>`.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }
    /// The bucket hash holding the sessions of the user whose encoded sub is `esub`.
    pub(crate) fn user_bucket(&self, esub: &str) -> String {
        format!("{}u:{}", self.base, bucket(esub))
    }
    /// The bucket hash holding the customers of the users whose encoded sub is `esub`'s bucket.
    pub(crate) fn customer_bucket(&self, esub: &str) -> String {
        format!("{}c:{}", self.base, bucket(esub))
    }
    /// The bucket hash listing the users of the OP session whose encoded sid is `esid`.
    pub(crate) fn op_session_bucket(&self, esid: &str) -> String {
        format!("{}i:{}", self.base, bucket(esid))
    }
    /// The logout markers of this issuer (a hash: field `<kind>:<enc value>`).
    pub(crate) fn markers(&self) -> String {
        format!("{}x", self.base)
    }
    /// The same markers by expiry (a sorted set), to prune them.
    pub(crate) fn marker_expiry(&self) -> String {
        format!("{}xx", self.base)
    }
    pub(crate) fn jti(&self, jti: &str) -> String {
        format!("{}jti:{}", self.base, encode_component(jti))
    }
    /// A lease ([`SessionIndex::claim`](super::SessionIndex::claim)).
    pub(crate) fn lease(&self, name: &str) -> String {
        format!("{}lease:{}", self.base, encode_component(name))
    }
    /// An event claim ([`SessionIndex::claim_event`](super::SessionIndex::claim_event)).
    pub(crate) fn event(&self, key: &str) -> String {
        format!("{}evt:{}", self.base, encode_component(key))
    }
    /// The access-token denylist markers of this issuer (a hash: field `<kind>:<enc value>`).
    pub fn deny(&self) -> String {
        format!("{}deny", self.base)
    }
    /// The same markers by expiry (a sorted set), to prune them.
    pub(crate) fn deny_expiry(&self) -> String {
        format!("{}denyx", self.base)
    }
}

/// The key names of one issuer in layout version 1, which a receiver keeps ending sessions in
/// while applications move (`IndexSettings::legacy_v1`).
#[derive(Debug, Clone)]
pub(crate) struct V1Keys {
    base: String,
}

impl V1Keys {
    pub(crate) fn new(prefix: &str, issuer: &str) -> Self {
        Self {
            base: format!("{prefix}v1:{{{}}}:", encode_component(issuer)),
        }
    }
    pub(crate) fn session_prefix(&self) -> String {
        format!("{}s:", self.base)
    }
    pub(crate) fn sid_prefix(&self) -> String {
        format!("{}sid:", self.base)
    }
    pub(crate) fn sub_prefix(&self) -> String {
        format!("{}sub:", self.base)
    }
    pub(crate) fn session(&self, session_id: &str) -> String {
        format!("{}s:{}", self.base, encode_component(session_id))
    }
    pub(crate) fn sid(&self, sid: &str) -> String {
        format!("{}sid:{}", self.base, encode_component(sid))
    }
    pub(crate) fn sub(&self, sub: &str) -> String {
        format!("{}sub:{}", self.base, encode_component(sub))
    }
    pub(crate) fn sid_marker(&self, sid: &str) -> String {
        format!("{}xsid:{}", self.base, encode_component(sid))
    }
    pub(crate) fn sub_marker(&self, sub: &str) -> String {
        format!("{}xsub:{}", self.base, encode_component(sub))
    }
    pub(crate) fn deny(&self) -> String {
        format!("{}deny", self.base)
    }
    pub(crate) fn deny_expiry(&self) -> String {
        format!("{}denyx", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_separators_and_tags() {
        assert_eq!(
            encode_component("a b:c|d%e{f}\"g'"),
            "a%20b%3Ac%7Cd%25e%7Bf%7D%22g%27"
        );
        assert_eq!(encode_component("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    #[test]
    fn decoding_inverts_encoding() {
        for raw in ["a b:c|d%e{f}\"g'", "plain", "", "é%41+"] {
            assert_eq!(decode_component(&encode_component(raw)), raw);
        }
    }

    #[test]
    fn different_inputs_never_share_a_key() {
        let inputs = [
            "a:b", "a%3Ab", "a", "a ", "a+", "A", "", "%", "%25", "{a}", "a}", "{",
        ];
        let keys: std::collections::HashSet<_> = inputs
            .iter()
            .map(|s| IssuerKeys::new("p:", "iss").jti(s))
            .collect();
        assert_eq!(keys.len(), inputs.len());
        let issuers: std::collections::HashSet<_> = inputs
            .iter()
            .map(|s| IssuerKeys::new("p:", s).markers())
            .collect();
        assert_eq!(issuers.len(), inputs.len());
    }

    #[test]
    fn buckets_are_the_first_hex_digits_of_sha1() {
        // sha1("alice") = 522b276a356bdf39013dfabea2cd43e141ecc9e8
        assert_eq!(bucket("alice"), "522b");
        assert_eq!(
            IssuerKeys::new("p:", "https://op.example").user_bucket("alice"),
            "p:v2:{https%3A%2F%2Fop.example}:u:522b"
        );
    }

    #[test]
    fn every_key_of_an_issuer_shares_one_hash_tag() {
        let k = IssuerKeys::new("p:", "https://op.example/{x}");
        let tag = "{https%3A%2F%2Fop.example%2F%7Bx%7D}";
        for key in [
            k.deny(),
            k.deny_expiry(),
            k.markers(),
            k.marker_expiry(),
            k.user_bucket("b"),
            k.jti("e"),
            k.event("f"),
        ] {
            let open = key.find('{').expect("tag open");
            let close = key[open..].find('}').expect("tag close") + open;
            assert_eq!(&key[open..=close], tag, "{key}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Any Unicode, or short strings dense in the characters that could forge a key.
        fn component() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[%{}:a-c0-9 ]{0,8}",
                "(%[0-9A-Fa-f]{2}|[a{}:])*"
            ]
        }

        /// The Cluster hash tag of a key: between the first `{` and the first `}` after it.
        fn hash_tag(key: &str) -> Option<&str> {
            let open = key.find('{')?;
            let close = key[open + 1..].find('}')? + open + 1;
            Some(&key[open + 1..close])
        }

        fn all_keys(k: &IssuerKeys, x: &str) -> [String; 2] {
            [k.jti(x), k.event(x)]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn encoding_round_trips_and_uses_only_safe_bytes(raw in component()) {
                let encoded = encode_component(&raw);
                prop_assert_eq!(decode_component(&encoded), raw);
                prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
            }

            #[test]
            fn different_components_never_share_a_key(
                iss_a in component(), iss_b in component(), a in component(), b in component()
            ) {
                let (ka, kb) = (IssuerKeys::new("p:", &iss_a), IssuerKeys::new("p:", &iss_b));
                let (keys_a, keys_b) = (all_keys(&ka, &a), all_keys(&kb, &b));
                for (i, key_a) in keys_a.iter().enumerate() {
                    for (j, key_b) in keys_b.iter().enumerate() {
                        let same_input = i == j && iss_a == iss_b && a == b;
                        prop_assert_eq!(key_a == key_b, same_input, "{} vs {}", key_a, key_b);
                    }
                }
                prop_assert_eq!(ka.markers() == kb.markers(), iss_a == iss_b);
                prop_assert_eq!(record_key("p:", &a) == record_key("p:", &b), a == b);
            }

            #[test]
            fn every_key_of_an_issuer_hashes_to_the_issuer_tag(iss in component(), x in component()) {
                let k = IssuerKeys::new("p:", &iss);
                let tag = encode_component(&iss);
                let encoded = encode_component(&x);
                for key in all_keys(&k, &x).into_iter().chain([k.user_bucket(&encoded), k.markers()]) {
                    prop_assert_eq!(hash_tag(&key), Some(tag.as_str()), "{}", key);
                }
                let record = record_key("p:", &x);
                let own = encode_component(&x);
                prop_assert_eq!(hash_tag(&record), Some(own.as_str()));
            }
        }
    }
}
