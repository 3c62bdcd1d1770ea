//! Service-account tokens: JWTs signed with the cluster's `sa.key`, carrying
//! upstream's claims, and their verification.
//!
//! rcgen makes ECDSA P-256 keys (ES256); RSA keys (RS256), as kubeadm makes them,
//! work too. Signing and verification use ring directly: a JWT is only
//! `base64url(header).base64url(claims).base64url(signature)`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::{self, PemObject};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The issuer (and default audience) upstream's kubeadm configures.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the service-account key is not PEM: {0}")]
    Pem(String),
    #[error("the service-account key holds no PKCS#8 private key")]
    NotPkcs8,
    #[error("the service-account key is neither ECDSA P-256 nor RSA: {0}")]
    Unsupported(String),
}

/// Why a bearer token was not accepted. Clients only ever see 401; the reason goes
/// to the log and to TokenReview's `status.error`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token is signed with {0}, not this cluster's algorithm")]
    Algorithm(String),
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token was issued by {0:?}, not {ISSUER:?}")]
    Issuer(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's audiences are not accepted")]
    Audience,
    #[error("the token could not be signed")]
    Sign,
    #[error("{0}")]
    Stale(String),
}

/// How the key signs: ES256 or RS256.
enum Signer {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// The cluster's service-account key: issues and verifies tokens.
pub struct TokenKey {
    signer: Signer,
    /// Upstream's key id: the unpadded base64url SHA-256 of the public key (PKIX DER).
    kid: String,
    rng: SystemRandom,
}

/// `kubernetes.io.serviceaccount` and the bound objects in the claims.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// The private claims under `kubernetes.io`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// A service-account token's claims, named as upstream names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

impl Claims {
    /// The user name a token authenticates as.
    pub fn username(&self) -> String {
        service_account_user(
            &self.kubernetes.namespace,
            &self.kubernetes.serviceaccount.name,
        )
    }
}

/// `system:serviceaccount:<ns>:<name>`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: String,
}

/// Clock skew tolerated on `nbf` and `exp`, as upstream's validator allows.
const LEEWAY_SECONDS: i64 = 60;

impl TokenKey {
    /// Reads a PKCS#8 PEM private key (what rcgen's `serialize_pem` writes).
    pub fn from_pem(pem: &str) -> Result<TokenKey, KeyError> {
        let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
            pem::Error::NoItemsFound => KeyError::NotPkcs8,
            e => KeyError::Pem(e.to_string()),
        })?;
        let PrivateKeyDer::Pkcs8(der) = key else {
            return Err(KeyError::NotPkcs8);
        };
        let der = der.secret_pkcs8_der();
        let rng = SystemRandom::new();
        let signer = match EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der,
            &rng,
        ) {
            Ok(pair) => Signer::Ecdsa(pair),
            Err(ecdsa) => match RsaKeyPair::from_pkcs8(der) {
                Ok(pair) => Signer::Rsa(pair),
                Err(rsa) => return Err(KeyError::Unsupported(format!("{ecdsa}; {rsa}"))),
            },
        };
        // The SubjectPublicKeyInfo is what upstream hashes for the key id.
        let spki = rcgen::KeyPair::from_pem(pem)
            .map(|k| rcgen::PublicKeyData::subject_public_key_info(&k))
            .map_err(|e| KeyError::Unsupported(e.to_string()))?;
        let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&spki));
        Ok(TokenKey { signer, kid, rng })
    }

    fn algorithm(&self) -> &'static str {
        match self.signer {
            Signer::Ecdsa(_) => "ES256",
            Signer::Rsa(_) => "RS256",
        }
    }

    /// The signed JWT for `claims`.
    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        let header = Header {
            alg: self.algorithm().to_string(),
            kid: self.kid.clone(),
        };
        let header = serde_json::to_vec(&header).map_err(|_| TokenError::Sign)?;
        let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Sign)?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = match &self.signer {
            Signer::Ecdsa(pair) => pair
                .sign(&self.rng, signing_input.as_bytes())
                .map_err(|_| TokenError::Sign)?
                .as_ref()
                .to_vec(),
            Signer::Rsa(pair) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    signing_input.as_bytes(),
                    &mut out,
                )
                .map_err(|_| TokenError::Sign)?;
                out
            }
        };
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// The claims of `token` when it is ours, unexpired at `now` (Unix seconds) and
    /// meant for one of `audiences`. Whether its service account (and bound object)
    /// still exist is the caller's check.
    pub fn verify(&self, token: &str, audiences: &[&str], now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenError::Malformed)
        };
        let parsed: Header =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if parsed.alg != self.algorithm() {
            return Err(TokenError::Algorithm(parsed.alg));
        }
        let signing_input = &token[..header.len() + 1 + payload.len()];
        let sig = decode(sig)?;
        let verified = match &self.signer {
            Signer::Ecdsa(pair) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, pair.public_key())
                    .verify(signing_input.as_bytes(), &sig)
            }
            Signer::Rsa(pair) => UnparsedPublicKey::new(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                pair.public_key().as_ref(),
            )
            .verify(signing_input.as_bytes(), &sig),
        };
        verified.map_err(|_| TokenError::Signature)?;
        let claims: Claims =
            serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)?;
        if claims.iss != ISSUER {
            return Err(TokenError::Issuer(claims.iss));
        }
        if now > claims.exp + LEEWAY_SECONDS {
            return Err(TokenError::Expired);
        }
        if now + LEEWAY_SECONDS < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        if !claims.aud.iter().any(|a| audiences.contains(&a.as_str())) {
            return Err(TokenError::Audience);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: service_account_user("default", "bot"),
            aud: vec![ISSUER.into()],
            exp,
            iat: exp - 3600,
            nbf: exp - 3600,
            jti: "j".into(),
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: ObjectRef {
                    name: "bot".into(),
                    uid: "u".into(),
                },
                ..Default::default()
            },
        }
    }

    fn key() -> TokenKey {
        TokenKey::from_pem(&rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_carry_their_claims() {
        let key = key();
        let token = key.issue(&claims(10_000)).unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], key.kid);
        let back = key.verify(&token, &[ISSUER], 9_000).unwrap();
        assert_eq!(back, claims(10_000));
        assert_eq!(back.username(), "system:serviceaccount:default:bot");
    }

    #[test]
    fn rejects_expired_foreign_tampered_and_misaddressed_tokens() {
        let key = key();
        let token = key.issue(&claims(10_000)).unwrap();
        assert_eq!(
            key.verify(&token, &[ISSUER], 10_000 + LEEWAY_SECONDS + 1),
            Err(TokenError::Expired)
        );
        assert_eq!(
            key.verify(&token, &["vault"], 9_000),
            Err(TokenError::Audience)
        );
        let other = self::key().issue(&claims(10_000)).unwrap();
        assert_eq!(
            key.verify(&other, &[ISSUER], 9_000),
            Err(TokenError::Signature)
        );
        // Swapping in other claims breaks the signature.
        let mut forged = claims(10_000);
        forged.kubernetes.serviceaccount.name = "admin".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(
            key.verify(&tampered, &[ISSUER], 9_000),
            Err(TokenError::Signature)
        );
        assert_eq!(
            key.verify("garbage", &[ISSUER], 0),
            Err(TokenError::Malformed)
        );
        // "none" is never accepted, whatever the payload says.
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(
            key.verify(&unsigned, &[ISSUER], 9_000),
            Err(TokenError::Algorithm("none".into()))
        );
    }
}
