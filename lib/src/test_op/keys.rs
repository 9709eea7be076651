//! The built-in OP's signing keys: generation, JWK export, compact-JWS signing, and the key
//! file that lets `oidc-logout op serve` and `oidc-logout op send` (two processes) share them.
//!
//! Signing uses aws-lc-rs directly rather than jsonwebtoken, so the receiver's verification is
//! checked against an independent implementation.

use std::path::Path;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

/// Key generation or signing failed inside aws-lc-rs.
#[derive(Debug, thiserror::Error)]
#[error("cryptographic operation failed: {0}")]
pub struct CryptoError(pub(crate) &'static str);

/// The algorithms the built-in OP can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit key.
    Rs256,
    /// RSASSA-PSS with SHA-256, 2048-bit key.
    Ps256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

impl SigningAlg {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    /// Every algorithm the built-in OP signs with.
    pub const ALL: [Self; 5] = [
        Self::Rs256,
        Self::Ps256,
        Self::Es256,
        Self::Es384,
        Self::EdDsa,
    ];
}

impl std::fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The name is not one of [`SigningAlg::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown signing algorithm {0:?} (expected RS256, PS256, ES256, ES384 or EdDSA)")]
pub struct UnknownAlgorithm(String);

impl std::str::FromStr for SigningAlg {
    type Err = UnknownAlgorithm;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownAlgorithm(name.to_owned()))
    }
}

enum Pair {
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ec(sig::EcdsaKeyPair),
    Ed(sig::Ed25519KeyPair),
}

/// A signing key with its `kid` and algorithm.
pub struct SigningKey {
    kid: String,
    alg: SigningAlg,
    pair: Pair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A random URL-safe string of `bytes` random bytes.
pub fn random_id(bytes: usize) -> Result<String, CryptoError> {
    Ok(crate::sys::random_id(bytes)?)
}

impl From<crate::sys::RandomUnavailable> for CryptoError {
    fn from(_: crate::sys::RandomUnavailable) -> Self {
        Self("random")
    }
}

fn ec_signing(alg: SigningAlg) -> &'static sig::EcdsaSigningAlgorithm {
    if alg == SigningAlg::Es256 {
        &sig::ECDSA_P256_SHA256_FIXED_SIGNING
    } else {
        &sig::ECDSA_P384_SHA384_FIXED_SIGNING
    }
}

fn rsa_padding(alg: SigningAlg) -> &'static dyn sig::RsaEncoding {
    if alg == SigningAlg::Rs256 {
        &sig::RSA_PKCS1_SHA256
    } else {
        &sig::RSA_PSS_SHA256
    }
}

impl SigningKey {
    /// A key from its PKCS#8 (DER) private key, for `alg`, named `kid`.
    pub fn from_pkcs8(alg: SigningAlg, kid: String, der: &[u8]) -> Result<Self, CryptoError> {
        let pair = match alg {
            SigningAlg::Rs256 | SigningAlg::Ps256 => Pair::Rsa(
                sig::RsaKeyPair::from_pkcs8(der).map_err(|_| CryptoError("not an RSA key"))?,
                rsa_padding(alg),
            ),
            SigningAlg::Es256 | SigningAlg::Es384 => Pair::Ec(
                sig::EcdsaKeyPair::from_pkcs8(ec_signing(alg), der)
                    .map_err(|_| CryptoError("not an EC key of this curve"))?,
            ),
            SigningAlg::EdDsa => Pair::Ed(
                sig::Ed25519KeyPair::from_pkcs8(der)
                    .map_err(|_| CryptoError("not an Ed25519 key"))?,
            ),
        };
        Ok(Self { kid, alg, pair })
    }

    /// The private key as PKCS#8 (DER).
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, CryptoError> {
        let der = match &self.pair {
            Pair::Rsa(pair, _) => pair.as_der().map(|d| d.as_ref().to_vec()),
            Pair::Ec(pair) => pair.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
            Pair::Ed(pair) => pair.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
        };
        der.map_err(|_| CryptoError("PKCS#8 export"))
    }

    /// A fresh key pair with a random `kid`.
    pub fn generate(alg: SigningAlg) -> Result<Self, CryptoError> {
        let pair = match alg {
            SigningAlg::Rs256 | SigningAlg::Ps256 => {
                let pair = sig::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| CryptoError("RSA key generation"))?;
                Pair::Rsa(pair, rsa_padding(alg))
            }
            SigningAlg::Es256 | SigningAlg::Es384 => Pair::Ec(
                sig::EcdsaKeyPair::generate(ec_signing(alg))
                    .map_err(|_| CryptoError("EC key generation"))?,
            ),
            SigningAlg::EdDsa => Pair::Ed(
                sig::Ed25519KeyPair::generate()
                    .map_err(|_| CryptoError("Ed25519 key generation"))?,
            ),
        };
        Ok(Self {
            kid: random_id(12)?,
            alg,
            pair,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The public key as a JWK (with `kid`, `alg` and `use: sig`).
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &self.pair {
            Pair::Rsa(pair, _) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Pair::Ec(pair) => {
                // Uncompressed point: 0x04 || x || y.
                let coordinates = pair.public_key().as_ref().get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                let crv = if self.alg == SigningAlg::Es256 {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({ "kty": "EC", "crv": crv, "x": b64(x), "y": b64(y) })
            }
            Pair::Ed(pair) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()) })
            }
        };
        if let Some(map) = jwk.as_object_mut() {
            map.insert("kid".into(), self.kid.clone().into());
            map.insert("alg".into(), self.alg.name().into());
            map.insert("use".into(), "sig".into());
        }
        jwk
    }

    /// Sign `claims` as a compact JWS. The header gets `alg` and `kid` unless `header` sets them
    /// (tests use that to forge headers).
    pub fn sign(&self, header: &Map<String, Value>, claims: &Value) -> Result<String, CryptoError> {
        let mut full = Map::new();
        full.insert("alg".into(), self.alg.name().into());
        full.insert("kid".into(), self.kid.clone().into());
        for (k, v) in header {
            if v.is_null() {
                full.remove(k);
            } else {
                full.insert(k.clone(), v.clone());
            }
        }
        let input = format!(
            "{}.{}",
            b64(Value::Object(full).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.sign_bytes(input.as_bytes())?;
        Ok(format!("{input}.{}", b64(&signature)))
    }

    fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair, padding) => {
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(*padding, &rng, message, &mut out)
                    .map_err(|_| CryptoError("RSA sign"))?;
                Ok(out)
            }
            Pair::Ec(pair) => Ok(pair
                .sign(&rng, message)
                .map_err(|_| CryptoError("ECDSA sign"))?
                .as_ref()
                .to_vec()),
            Pair::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// The key file could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("key file {path}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a key file.
    #[error("{path}: not an oidc-logout key file: {why}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong, naming the member.
        why: String,
    },
}

/// What `oidc-logout op serve` publishes and `oidc-logout op send` signs with: the issuer URL and
/// the signing keys, stored as JSON
/// `{"issuer": "...", "keys": [{"kid": "...", "alg": "RS256", "pkcs8": "..."}]}` where `pkcs8` is
/// the private key as base64 DER or as a PEM `PRIVATE KEY` block. The file holds private keys: it
/// is written readable by its owner only.
#[derive(Debug)]
pub struct KeyFile {
    /// The issuer identifier the keys are published under.
    pub issuer: String,
    /// The signing keys; the first of each algorithm signs by default.
    pub keys: Vec<SigningKey>,
}

impl KeyFile {
    /// Read a key file.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|why| KeyFileError::Format { path: shown, why })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON ({e})"))?;
        let issuer = doc
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or("member \"issuer\" must be a string")?
            .to_owned();
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("member \"keys\" must be an array")?;
        let mut keys = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let member = |name: &str| {
                entry
                    .get(name)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("keys[{i}].{name} must be a string"))
            };
            let alg: SigningAlg = member("alg")?
                .parse()
                .map_err(|e| format!("keys[{i}].alg: {e}"))?;
            let der = decode_private_key(member("pkcs8")?)
                .ok_or_else(|| format!("keys[{i}].pkcs8 is neither base64 nor PEM"))?;
            let key = SigningKey::from_pkcs8(alg, member("kid")?.to_owned(), &der)
                .map_err(|e| format!("keys[{i}]: {e}"))?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("member \"keys\" is empty".into());
        }
        Ok(Self { issuer, keys })
    }

    /// Write the key file, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let shown = path.display().to_string();
        let mut keys = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            let der = key.to_pkcs8().map_err(|e| KeyFileError::Format {
                path: shown.clone(),
                why: e.to_string(),
            })?;
            keys.push(
                json!({ "kid": key.kid(), "alg": key.alg().name(), "pkcs8": STANDARD.encode(der) }),
            );
        }
        let text = serde_json::to_string_pretty(&json!({ "issuer": self.issuer, "keys": keys }))
            .unwrap_or_default();
        let io = |source| KeyFileError::Io {
            path: shown.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        // The mode above applies to a new file only; an existing one is narrowed too.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)
    }

    /// The first key of `alg`.
    pub fn key(&self, alg: SigningAlg) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.alg() == alg)
    }
}

/// Base64 DER, or a PEM block whose body is base64 DER.
fn decode_private_key(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD
        .decode(body.as_bytes())
        .or_else(|_| URL_SAFE_NO_PAD.decode(body.as_bytes()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trips_every_algorithm() {
        let dir = std::env::temp_dir().join(format!("oidc-logout-keys-{}", std::process::id()));
        let file = KeyFile {
            issuer: "http://127.0.0.1:9000".into(),
            keys: SigningAlg::ALL
                .into_iter()
                .map(SigningKey::generate)
                .collect::<Result<_, _>>()
                .unwrap(),
        };
        std::fs::write(&dir, "{}").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        file.save(&dir).unwrap();
        let loaded = KeyFile::load(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "the key file must not be readable by others"
            );
        }
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(loaded.issuer, file.issuer);
        for (a, b) in file.keys.iter().zip(&loaded.keys) {
            assert_eq!(a.public_jwk(), b.public_jwk());
        }
    }

    #[test]
    fn key_file_errors_name_the_member() {
        let err = KeyFile::parse(
            r#"{"issuer": "x", "keys": [{"kid": "k", "alg": "RS512", "pkcs8": ""}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("keys[0].alg"), "{err}");
        let err = KeyFile::parse(r#"{"keys": []}"#).unwrap_err();
        assert!(err.contains("issuer"), "{err}");
        let err = KeyFile::parse(
            r#"{"issuer": "x", "keys": [{"kid": "k", "alg": "ES256", "pkcs8": "AAAA"}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("keys[0]"), "{err}");
    }
}
