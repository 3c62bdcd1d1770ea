//! Issuing a certificate for an approved request, as upstream's local CA signer does:
//! the request's subject, public key and names, the usages the request asked for
//! (not what its PKCS#10 extensions say), not a CA, valid from five minutes ago (for
//! skewed clocks) for the requested duration capped at the signer's maximum (one year,
//! upstream's `--cluster-signing-duration` default) and at the CA's own expiry, with a
//! random 128-bit serial, signed by the cluster CA.
//!
//! The certificate is assembled in DER here rather than through rcgen, whose subject
//! type holds one value per attribute: a request naming several organizations
//! (groups) must keep them all. The subject is copied from the request as it is.

use rcgen::{KeyPair, SigningKey};
use rind_api::certificates::Request;
use std::time::Duration;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

/// Upstream's default `--cluster-signing-duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far back a certificate's validity starts.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// The shortest validity a signer honours (upstream: twice its assumed clock skew).
const MIN_DURATION: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the signing CA certificate is invalid: {0}")]
    CaCertificate(String),
    #[error("the signing CA key is invalid: {0}")]
    CaKey(String),
    #[error("the CA key's algorithm cannot sign certificates here")]
    Algorithm,
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The CA that signs for the built-in signers.
pub struct Authority {
    key: KeyPair,
    /// The CA certificate's subject (DER), the issuer of what it signs.
    subject: Vec<u8>,
    /// Its subject key identifier, the authority key identifier of what it signs.
    key_id: Option<Vec<u8>>,
    not_after: i64,
}

impl Authority {
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Self, SignError> {
        let bad = |e: String| SignError::CaCertificate(e);
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| bad(e.to_string()))?;
        let (_, cert) = X509Certificate::from_der(&pem.contents).map_err(|e| bad(e.to_string()))?;
        let key_id = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            });
        let key = KeyPair::from_pem(key_pem).map_err(|e| SignError::CaKey(e.to_string()))?;
        Ok(Authority {
            subject: cert.subject().as_raw().to_vec(),
            key_id,
            not_after: cert.validity().not_after.timestamp(),
            key,
        })
    }

    /// The PEM certificate for `request` with `usages`, valid for `requested` (the
    /// request's `expirationSeconds`) within the signer's bounds, issued at `now`.
    pub fn sign(
        &self,
        request: &Request,
        usages: &[&str],
        requested: Option<Duration>,
        now: jiff::Timestamp,
    ) -> Result<String, SignError> {
        let duration = match requested {
            None => MAX_DURATION,
            Some(d) => d.clamp(MIN_DURATION, MAX_DURATION),
        };
        let now = now.as_second();
        let not_before = now - BACKDATE.as_secs() as i64;
        let not_after = (now + duration.as_secs() as i64).min(self.not_after);
        let algorithm = self.algorithm()?;
        let serial: [u8; 16] = rand::random();
        let mut extensions = Vec::new();
        let (key_usage, ext_key_usage) = usage_bits(usages);
        if key_usage != 0 {
            extensions.push(extension(OID_KEY_USAGE, true, &bit_string_bits(key_usage)));
        }
        if !ext_key_usage.is_empty() {
            let oids: Vec<Vec<u8>> = ext_key_usage.iter().map(|o| oid(o)).collect();
            extensions.push(extension(OID_EXT_KEY_USAGE, false, &seq(&oids)));
        }
        // Basic constraints: not a CA.
        extensions.push(extension(OID_BASIC_CONSTRAINTS, true, &seq(&[])));
        if let Some(id) = &self.key_id {
            extensions.push(extension(
                OID_AUTHORITY_KEY_ID,
                false,
                &seq(&[tlv(0x80, id)]),
            ));
        }
        let names = subject_alt_names(request);
        if !names.is_empty() {
            extensions.push(extension(OID_SUBJECT_ALT_NAME, false, &seq(&names)));
        }
        let tbs = seq(&[
            tlv(0xa0, &integer(&[2])),
            integer(&serial),
            algorithm.clone(),
            self.subject.clone(),
            seq(&[time(not_before)?, time(not_after)?]),
            request.subject_der.clone(),
            request.public_key_der.clone(),
            tlv(0xa3, &seq(&extensions)),
        ]);
        let signature = self
            .key
            .sign(&tbs)
            .map_err(|e| SignError::Sign(e.to_string()))?;
        let der = seq(&[tbs, algorithm, bit_string(&signature)]);
        Ok(pem("CERTIFICATE", &der))
    }

    /// The AlgorithmIdentifier of the CA key's signatures.
    fn algorithm(&self) -> Result<Vec<u8>, SignError> {
        let alg = self.key.algorithm();
        if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            Ok(seq(&[oid(&[1, 2, 840, 10045, 4, 3, 2])]))
        } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            Ok(seq(&[oid(&[1, 2, 840, 10045, 4, 3, 3])]))
        } else if alg == &rcgen::PKCS_ED25519 {
            Ok(seq(&[oid(&[1, 3, 101, 112])]))
        } else if alg == &rcgen::PKCS_RSA_SHA256 {
            Ok(seq(&[oid(&[1, 2, 840, 113549, 1, 1, 11]), tlv(0x05, &[])]))
        } else {
            Err(SignError::Algorithm)
        }
    }
}

const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const OID_EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_AUTHORITY_KEY_ID: &[u64] = &[2, 5, 29, 35];
const OID_SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];

/// The key usage bits (bit 0 = digitalSignature) and extended key usage OIDs of
/// `spec.usages`, mapped as upstream's signer maps them.
fn usage_bits(usages: &[&str]) -> (u16, Vec<&'static [u64]>) {
    let mut bits = 0u16;
    let mut extended: Vec<&'static [u64]> = Vec::new();
    for usage in usages {
        let bit = match *usage {
            "signing" | "digital signature" => Some(0),
            "content commitment" => Some(1),
            "key encipherment" => Some(2),
            "data encipherment" => Some(3),
            "key agreement" => Some(4),
            "cert sign" => Some(5),
            "crl sign" => Some(6),
            "encipher only" => Some(7),
            "decipher only" => Some(8),
            _ => None,
        };
        if let Some(bit) = bit {
            bits |= 1 << bit;
            continue;
        }
        let ext: Option<&'static [u64]> = match *usage {
            "any" => Some(&[2, 5, 29, 37, 0]),
            "server auth" => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 1]),
            "client auth" => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 2]),
            "code signing" => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 3]),
            "email protection" | "s/mime" => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 4]),
            "ipsec end system" => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 5]),
            "ipsec tunnel" => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 6]),
            "ipsec user" => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 7]),
            "timestamping" => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 8]),
            "ocsp signing" => Some(&[1, 3, 6, 1, 5, 5, 7, 3, 9]),
            "microsoft sgc" => Some(&[1, 3, 6, 1, 4, 1, 311, 10, 3, 3]),
            "netscape sgc" => Some(&[2, 16, 840, 1, 113730, 4, 1]),
            _ => None,
        };
        if let Some(ext) = ext
            && !extended.contains(&ext)
        {
            extended.push(ext);
        }
    }
    (bits, extended)
}

fn subject_alt_names(request: &Request) -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    for dns in &request.dns_names {
        names.push(tlv(0x82, dns.as_bytes()));
    }
    for email in &request.emails {
        names.push(tlv(0x81, email.as_bytes()));
    }
    for ip in &request.ip_addresses {
        let bytes = match ip {
            std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
            std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        names.push(tlv(0x87, &bytes));
    }
    for uri in &request.uris {
        names.push(tlv(0x86, uri.as_bytes()));
    }
    names
}

// A minimal DER writer: what a certificate needs and nothing more.

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A non-negative INTEGER from big-endian bytes.
fn integer(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = if trimmed.is_empty() { vec![0] } else { trimmed };
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    tlv(0x02, &content)
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    let mut push = |mut n: u64| {
        let mut chunk = vec![(n & 0x7f) as u8];
        n >>= 7;
        while n > 0 {
            chunk.push(0x80 | (n & 0x7f) as u8);
            n >>= 7;
        }
        chunk.reverse();
        content.extend(chunk);
    };
    if let [first, second, rest @ ..] = arcs {
        push(first * 40 + second);
        for arc in rest {
            push(*arc);
        }
    }
    tlv(0x06, &content)
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = vec![0];
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

/// A BIT STRING of named bits (bit 0 first), trailing zero bits dropped as DER wants.
fn bit_string_bits(bits: u16) -> Vec<u8> {
    let highest = 15 - bits.leading_zeros() as usize;
    let mut bytes = vec![0u8; highest / 8 + 1];
    for bit in 0..=highest {
        if bits & (1 << bit) != 0 {
            bytes[bit / 8] |= 0x80 >> (bit % 8);
        }
    }
    let unused = 7 - (highest % 8) as u8;
    let mut content = vec![unused];
    content.extend(bytes);
    tlv(0x03, &content)
}

fn extension(id: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![oid(id)];
    if critical {
        parts.push(tlv(0x01, &[0xff]));
    }
    parts.push(tlv(0x04, value));
    seq(&parts)
}

/// UTCTime through 2049, GeneralizedTime after, as X.509 wants.
fn time(seconds: i64) -> Result<Vec<u8>, SignError> {
    let at = jiff::Timestamp::from_second(seconds)
        .map_err(|e| SignError::Sign(e.to_string()))?
        .to_zoned(jiff::tz::TimeZone::UTC);
    if at.year() < 2050 {
        Ok(tlv(
            0x17,
            at.strftime("%y%m%d%H%M%SZ").to_string().as_bytes(),
        ))
    } else {
        Ok(tlv(
            0x18,
            at.strftime("%Y%m%d%H%M%SZ").to_string().as_bytes(),
        ))
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};

    fn ca() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "kubernetes");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    /// A request whose subject has two organizations, which rcgen cannot express:
    /// built by hand with the same DER helpers, signed by the requester's key.
    fn request_with_groups() -> (Request, String) {
        let key = KeyPair::generate().unwrap();
        let attribute =
            |id: &[u64], value: &str| tlv(0x31, &seq(&[oid(id), tlv(0x0c, value.as_bytes())]));
        let subject = seq(&[
            attribute(&[2, 5, 4, 10], "dev"),
            attribute(&[2, 5, 4, 10], "ops"),
            attribute(&[2, 5, 4, 3], "alice"),
        ]);
        let spki = x509_parser::pem::parse_x509_pem(key.public_key_pem().as_bytes())
            .unwrap()
            .1
            .contents;
        let info = seq(&[integer(&[0]), subject, spki, tlv(0xa0, &[])]);
        let signature = key.sign(&info).unwrap();
        let der = seq(&[
            info,
            seq(&[oid(&[1, 2, 840, 10045, 4, 3, 2])]),
            bit_string(&signature),
        ]);
        let pem = pem("CERTIFICATE REQUEST", &der);
        (
            rind_api::certificates::parse_request(pem.as_bytes()).unwrap(),
            pem,
        )
    }

    #[test]
    fn issued_certificates_carry_the_request_and_the_usages() {
        let (ca_cert, ca_key) = ca();
        let authority = Authority::new(&ca_cert, &ca_key).unwrap();
        let (request, _) = request_with_groups();
        assert_eq!(request.organizations, ["dev", "ops"]);
        let now = jiff::Timestamp::now();
        let issued = authority
            .sign(
                &request,
                &["digital signature", "key encipherment", "client auth"],
                Some(Duration::from_secs(3600)),
                now,
            )
            .unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(issued.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(&block.contents).unwrap();
        let names = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
            it.map(|a| a.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&mut cert.subject().iter_common_name()), ["alice"]);
        assert_eq!(
            names(&mut cert.subject().iter_organization()),
            ["dev", "ops"]
        );
        assert_eq!(names(&mut cert.issuer().iter_common_name()), ["kubernetes"]);
        let validity = cert.validity();
        assert_eq!(
            validity.not_after.timestamp() - validity.not_before.timestamp(),
            3600 + 300
        );
        let usage = cert.key_usage().unwrap().unwrap().value;
        assert!(usage.digital_signature() && usage.key_encipherment() && !usage.key_cert_sign());
        let ext = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(ext.client_auth && !ext.server_auth);
        assert!(!cert.is_ca());
        // Verified against the CA's key.
        let (_, ca_block) = x509_parser::pem::parse_x509_pem(ca_cert.as_bytes()).unwrap();
        let (_, ca) = X509Certificate::from_der(&ca_block.contents).unwrap();
        cert.verify_signature(Some(ca.public_key())).unwrap();
        // Short requests get the minimum, long ones the maximum.
        let short = authority
            .sign(
                &request,
                &["client auth"],
                Some(Duration::from_secs(60)),
                now,
            )
            .unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(short.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(&block.contents).unwrap();
        assert_eq!(cert.validity().not_after.timestamp(), now.as_second() + 600);
    }

    #[test]
    fn der_helpers_encode_as_x509_wants() {
        assert_eq!(
            oid(&[1, 2, 840, 10045, 4, 3, 2]),
            [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
        );
        assert_eq!(integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        // digitalSignature + keyEncipherment = bits 0 and 2: 0xa0 with 5 unused bits.
        assert_eq!(bit_string_bits(0b101), [0x03, 0x02, 0x05, 0xa0]);
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
    }
}
