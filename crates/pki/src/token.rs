//! Service-account tokens: ES256 JWS in compact form with Kubernetes claims.
//!
//! Hand-written on `ring` and `base64` instead of a JWT library: there is exactly one algorithm, the
//! header's `alg` is checked against it before anything else (so `none` and HMAC confusion cannot
//! happen), and the signature is the fixed 64-byte `r || s` form JWS requires.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Deserializer, Serialize};

use crate::cert::{pem_encode, unix_seconds};
use crate::Error;

/// The issuer Kubernetes uses by default, and the one [`TokenClaims::for_service_account`] sets.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 60;
/// Longer bearer tokens are rejected before any decoding.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The only accepted JWS algorithm.
const ALG: &str = "ES256";
/// DER of `SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 }` up to the BIT STRING's content; the
/// 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why a token could not be signed or was rejected. Every verification failure means "not
/// authenticated" (HTTP 401); the variants exist for logs.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is not a well-formed JWS with Kubernetes claims.
    #[error("malformed service-account token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm other than ES256 (including `none`).
    #[error("service-account token algorithm {0:?} is not accepted: only ES256 is")]
    Algorithm(String),
    /// The header names a key id this cluster does not have.
    #[error("service-account token was signed by unknown key {0:?}")]
    UnknownKey(String),
    /// The signature does not verify with the cluster's key.
    #[error("service-account token signature is invalid")]
    Signature,
    /// `exp` (plus leeway) is in the past.
    #[error("service-account token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`, seconds since the Unix epoch.
        exp: u64,
        /// The verification time, seconds since the Unix epoch.
        now: u64,
    },
    /// `nbf` (minus leeway) is in the future.
    #[error("service-account token is not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The token's `nbf`, seconds since the Unix epoch.
        nbf: u64,
        /// The verification time, seconds since the Unix epoch.
        now: u64,
    },
    /// Claims could not be encoded as JSON.
    #[error("cannot encode service-account token claims")]
    Encode(#[source] serde_json::Error),
    /// The signing operation failed (the system random source is broken).
    #[error("cannot sign the service-account token")]
    Sign,
}

/// The claims of a Kubernetes service-account token (the `TokenRequest` shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// Issuer, normally [`DEFAULT_ISSUER`].
    pub iss: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    /// Audiences; the API server's own is normally the issuer. A single string is accepted when
    /// parsing, as RFC 7519 allows.
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
    /// Not-before time, seconds since the Unix epoch.
    pub nbf: u64,
    /// Token id, when the issuer sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The private `kubernetes.io` claim: what the token is bound to.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub serviceaccount: ObjectRef,
    /// The pod the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    /// The secret the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    /// The node the token is bound to, or the node of the bound pod, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// A reference to an object by name and uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's name.
    pub name: String,
    /// The object's uid; a token whose uid no longer matches the live object must be refused.
    /// Empty (and left out) when unknown, as for the node of a pod whose Node object is gone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl TokenClaims {
    /// Claims for service account `namespace/name` with `uid`, issued by [`DEFAULT_ISSUER`] at `now`
    /// and valid for `ttl`; bind it to a pod or node by setting `kubernetes.pod`/`kubernetes.node`.
    pub fn for_service_account(
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: Vec<String>,
        now: SystemTime,
        ttl: Duration,
    ) -> Self {
        let iat = unix_seconds(now).max(0) as u64;
        TokenClaims {
            iss: DEFAULT_ISSUER.to_owned(),
            sub: format!("system:serviceaccount:{namespace}:{name}"),
            aud: audiences,
            exp: iat.saturating_add(ttl.as_secs()),
            iat,
            nbf: iat,
            jti: None,
            kubernetes: KubernetesClaims {
                namespace: namespace.to_owned(),
                serviceaccount: ObjectRef { name: name.to_owned(), uid: uid.to_owned() },
                pod: None,
                secret: None,
                node: None,
            },
        }
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(aud) => vec![aud],
        OneOrMany::Many(aud) => aud,
    })
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

/// Signs and verifies service-account tokens with the cluster's ECDSA P-256 key. Cheap to clone.
///
/// `verify` checks the algorithm, key id, signature and time window; the caller checks the
/// audience and that the service account (and bound pod) still exist with the token's uids.
#[derive(Clone)]
pub struct ServiceAccountTokens {
    inner: Arc<Inner>,
}

struct Inner {
    key: EcdsaKeyPair,
    /// Uncompressed point `04 || x || y`.
    public_point: Vec<u8>,
    public_key_pem: String,
    kid: String,
    rng: SystemRandom,
}

impl fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountTokens").field("kid", &self.inner.kid).finish_non_exhaustive()
    }
}

impl ServiceAccountTokens {
    /// Loads an ECDSA P-256 signing key from PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_private_key_pem(pem: &str) -> crate::Result<Self> {
        const WHAT: &str = "service-account signing key";
        let invalid = |reason: String| Error::InvalidPem { what: WHAT, reason };
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| invalid(format!("no pkcs#8 private key could be read: {e}")))?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der(), &rng)
            .map_err(|e| invalid(format!("it is not an ecdsa p-256 key: {e}")))?;
        let public_point = key.public_key().as_ref().to_vec();
        if public_point.len() != 65 || public_point.first() != Some(&4) {
            return Err(invalid("its public key is not an uncompressed p-256 point".to_owned()));
        }
        let spki = [P256_SPKI_PREFIX.as_slice(), &public_point].concat();
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        let public_key_pem = pem_encode("PUBLIC KEY", &spki);
        Ok(ServiceAccountTokens { inner: Arc::new(Inner { key, public_point, public_key_pem, kid, rng }) })
    }

    /// A signer with a fresh, random ECDSA P-256 key (for in-process test clusters; a real cluster
    /// loads its key from disk).
    pub fn generate() -> crate::Result<Self> {
        let key =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(Error::KeyGeneration)?;
        Self::from_private_key_pem(&key.serialize_pem())
    }

    /// The key id: base64url (no padding) of the SHA-256 of the public key's SPKI DER, as Kubernetes
    /// computes it.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The verification key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`), the content of `sa.pub`.
    pub fn public_key_pem(&self) -> &str {
        &self.inner.public_key_pem
    }

    /// The JWKS document served at `/openid/v1/jwks`.
    pub fn jwks_json(&self) -> String {
        let point = &self.inner.public_point;
        // Checked to be 65 bytes at construction.
        let (x, y) = (&point[1..33], &point[33..65]);
        serde_json::json!({
            "keys": [{
                "use": "sig",
                "kty": "EC",
                "kid": self.inner.kid,
                "crv": "P-256",
                "alg": ALG,
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
            }]
        })
        .to_string()
    }

    /// Signs `claims` into a compact JWS: `base64url(header).base64url(claims).base64url(r || s)`.
    pub fn sign(&self, claims: &TokenClaims) -> Result<String, TokenError> {
        let header = Header { alg: ALG.to_owned(), kid: Some(self.inner.kid.clone()) };
        let header = serde_json::to_vec(&header).map_err(TokenError::Encode)?;
        let claims = serde_json::to_vec(claims).map_err(TokenError::Encode)?;
        let mut token = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature =
            self.inner.key.sign(&self.inner.rng, token.as_bytes()).map_err(|_| TokenError::Sign)?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(token)
    }

    /// Verifies `token` at `now` and returns its claims: the algorithm must be ES256, the key id
    /// (when present) this key's, the signature valid, and `nbf <= now <= exp` within 60 s leeway.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<TokenClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("it is too long"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("it is not three dot-separated parts"));
        };
        let header: Header = decode_json(header_b64, "the header is not base64url json")?;
        if header.alg != ALG {
            return Err(TokenError::Algorithm(header.alg));
        }
        if let Some(kid) = header.kid {
            if kid != self.inner.kid {
                return Err(TokenError::UnknownKey(kid));
            }
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
        let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.inner.public_point)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::Signature)?;
        let claims: TokenClaims =
            decode_json(claims_b64, "the claims are not kubernetes service-account claims")?;
        let now = unix_seconds(now).max(0) as u64;
        if now > claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired { exp: claims.exp, now });
        }
        if now.saturating_add(LEEWAY_SECS) < claims.nbf {
            return Err(TokenError::NotYetValid { nbf: claims.nbf, now });
        }
        Ok(claims)
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str, what: &'static str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed(what))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> ServiceAccountTokens {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        ServiceAccountTokens::from_private_key_pem(&key.serialize_pem()).unwrap()
    }

    fn claims(now: SystemTime) -> TokenClaims {
        let mut claims = TokenClaims::for_service_account(
            "default",
            "builder",
            "6f1c-uid",
            vec![DEFAULT_ISSUER.to_owned()],
            now,
            Duration::from_secs(3600),
        );
        claims.kubernetes.pod = Some(ObjectRef { name: "web-0".to_owned(), uid: "pod-uid".to_owned() });
        claims
    }

    #[test]
    fn a_signed_token_verifies_and_returns_its_claims() {
        let tokens = signer();
        let now = SystemTime::now();
        let token = tokens.sign(&claims(now)).unwrap();
        assert_eq!(tokens.verify(&token, now).unwrap(), claims(now));
        assert_eq!(claims(now).sub, "system:serviceaccount:default:builder");
    }

    #[test]
    fn the_header_names_es256_and_the_stable_key_id() {
        let tokens = signer();
        let token = tokens.sign(&claims(SystemTime::now())).unwrap();
        let header = token.split('.').next().unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({ "alg": "ES256", "kid": tokens.kid() }));
    }

    #[test]
    fn the_claims_use_the_kubernetes_field_names() {
        let json = serde_json::to_value(claims(SystemTime::UNIX_EPOCH)).unwrap();
        assert_eq!(json["kubernetes.io"]["serviceaccount"]["uid"], "6f1c-uid");
        assert_eq!(json["kubernetes.io"]["pod"]["name"], "web-0");
        assert!(json["kubernetes.io"].get("node").is_none());
        assert_eq!(json["aud"], serde_json::json!([DEFAULT_ISSUER]));
    }

    #[test]
    fn an_expired_token_is_rejected_after_the_leeway() {
        let tokens = signer();
        let issued = SystemTime::now();
        let token = tokens.sign(&claims(issued)).unwrap();
        let within_leeway = issued + Duration::from_secs(3600 + 30);
        assert!(tokens.verify(&token, within_leeway).is_ok());
        let late = issued + Duration::from_secs(3600 + 61);
        assert!(matches!(tokens.verify(&token, late), Err(TokenError::Expired { .. })));
    }

    #[test]
    fn a_token_used_before_nbf_is_rejected() {
        let tokens = signer();
        let issued = SystemTime::now();
        let token = tokens.sign(&claims(issued)).unwrap();
        let early = issued - Duration::from_secs(120);
        assert!(matches!(tokens.verify(&token, early), Err(TokenError::NotYetValid { .. })));
    }

    #[test]
    fn a_tampered_signature_or_payload_is_rejected() {
        let tokens = signer();
        let now = SystemTime::now();
        let token = tokens.sign(&claims(now)).unwrap();
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
        sig[10] ^= 0x01;
        let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&sig));
        assert!(matches!(tokens.verify(&forged, now), Err(TokenError::Signature)));

        let mut other = claims(now);
        other.kubernetes.namespace = "kube-system".to_owned();
        let other_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let swapped = format!("{}.{other_payload}.{}", parts[0], parts[2]);
        assert!(matches!(tokens.verify(&swapped, now), Err(TokenError::Signature)));
    }

    #[test]
    fn alg_none_is_rejected() {
        let tokens = signer();
        let now = SystemTime::now();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(now)).unwrap());
        for token in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
            let err = tokens.verify(&token, now).unwrap_err();
            assert!(
                matches!(err, TokenError::Algorithm(ref alg) if alg == "none")
                    || matches!(err, TokenError::Malformed(_)),
                "{err}"
            );
        }
        let hs256 = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        assert!(matches!(
            tokens.verify(&format!("{hs256}.{payload}.AAAA"), now),
            Err(TokenError::Algorithm(_))
        ));
    }

    #[test]
    fn a_token_from_another_key_is_rejected() {
        let (ours, theirs) = (signer(), signer());
        let now = SystemTime::now();
        let token = theirs.sign(&claims(now)).unwrap();
        assert!(matches!(ours.verify(&token, now), Err(TokenError::UnknownKey(_))));
        // Without the key id the signature check still refuses it.
        let parts: Vec<&str> = token.split('.').collect();
        let no_kid = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#);
        let signed = format!("{no_kid}.{}", parts[1]);
        let sig = theirs.inner.key.sign(&theirs.inner.rng, signed.as_bytes()).unwrap();
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        assert!(theirs.verify(&token, now).is_ok());
        assert!(matches!(ours.verify(&token, now), Err(TokenError::Signature)));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let tokens = signer();
        for token in ["", "a.b", "a.b.c.d", "!!.??.##", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(
                matches!(tokens.verify(token, SystemTime::now()), Err(TokenError::Malformed(_))),
                "{token}"
            );
        }
    }

    #[test]
    fn the_jwks_document_describes_the_public_key() {
        let tokens = signer();
        let jwks: serde_json::Value = serde_json::from_str(&tokens.jwks_json()).unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(
            (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
            (Some("EC"), Some("P-256"), Some("ES256"))
        );
        assert_eq!(key["kid"], tokens.kid());
        let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
        let y = URL_SAFE_NO_PAD.decode(key["y"].as_str().unwrap()).unwrap();
        assert_eq!([&[4u8][..], &x, &y].concat(), tokens.inner.public_point);
    }

    #[test]
    fn the_public_key_pem_matches_what_rcgen_derives() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let tokens = ServiceAccountTokens::from_private_key_pem(&key.serialize_pem()).unwrap();
        assert_eq!(tokens.public_key_pem().trim(), key.public_key_pem().trim());
    }

    #[test]
    fn a_generated_signer_verifies_its_own_tokens_and_secret_bindings_round_trip() {
        let tokens = ServiceAccountTokens::generate().unwrap();
        let now = SystemTime::now();
        let mut claims = claims(now);
        claims.kubernetes.pod = None;
        claims.kubernetes.secret = Some(ObjectRef { name: "s".to_owned(), uid: "s-uid".to_owned() });
        claims.kubernetes.node = Some(ObjectRef { name: "n1".to_owned(), uid: String::new() });
        let token = tokens.sign(&claims).unwrap();
        assert_eq!(tokens.verify(&token, now).unwrap(), claims);
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["kubernetes.io"]["secret"]["uid"], "s-uid");
        assert_eq!(
            json["kubernetes.io"]["node"],
            serde_json::json!({"name": "n1"}),
            "an unknown uid is left out"
        );
    }

    #[test]
    fn a_single_string_audience_parses() {
        let mut json = serde_json::to_value(claims(SystemTime::UNIX_EPOCH)).unwrap();
        json["aud"] = serde_json::json!("api");
        let parsed: TokenClaims = serde_json::from_value(json).unwrap();
        assert_eq!(parsed.aud, vec!["api".to_owned()]);
    }
}
