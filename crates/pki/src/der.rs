//! Minimal DER surgery for client certificate subjects.
//!
//! rcgen's `DistinguishedName` holds one value per attribute type, but Kubernetes maps every O
//! (organization) of a client certificate to a group, so a credential in two groups needs two O
//! attributes. rcgen builds and signs the certificate; [`replace_subject`] swaps in a subject
//! encoded by [`encode_name`] and re-signs the to-be-signed part with the same CA key.

use crate::{Error, Result};

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_BIT_STRING: u8 = 0x03;
/// `[0] EXPLICIT Version` at the start of a TBSCertificate.
const TAG_VERSION: u8 = 0xa0;
/// id-at-commonName, 2.5.4.3.
const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
/// id-at-organizationName, 2.5.4.10.
const OID_ORGANIZATION: [u8; 3] = [0x55, 0x04, 0x0a];

/// Encodes a DER `Name` with one RDN per organization followed by the common name, the order
/// `openssl req -subj "/O=system:masters/CN=admin"` produces.
pub(crate) fn encode_name(common_name: &str, organizations: &[String]) -> Vec<u8> {
    let rdn = |oid: &[u8], value: &str| {
        let attribute = [tlv(TAG_OID, oid), tlv(TAG_UTF8_STRING, value.as_bytes())].concat();
        tlv(TAG_SET, &tlv(TAG_SEQUENCE, &attribute))
    };
    let mut rdns: Vec<u8> = organizations.iter().flat_map(|o| rdn(&OID_ORGANIZATION, o)).collect();
    rdns.extend(rdn(&OID_COMMON_NAME, common_name));
    tlv(TAG_SEQUENCE, &rdns)
}

/// Returns `cert_der` with its subject replaced by `subject_der`, re-signed by `signer` (the key
/// that signed the original; the signature algorithm identifier is kept).
pub(crate) fn replace_subject(
    cert_der: &[u8],
    subject_der: &[u8],
    signer: &impl rcgen::SigningKey,
) -> Result<Vec<u8>> {
    let malformed = || Error::Encoding("the generated certificate is not the expected der");
    let (tag, certificate, rest) = split_tlv(cert_der).ok_or_else(malformed)?;
    if tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err(malformed());
    }
    let (tag, tbs, after_tbs) = split_tlv(certificate).ok_or_else(malformed)?;
    if tag != TAG_SEQUENCE {
        return Err(malformed());
    }
    let (_, _, after_algorithm) = split_tlv(after_tbs).ok_or_else(malformed)?;
    let signature_algorithm = &after_tbs[..after_tbs.len() - after_algorithm.len()];

    let mut fields = Vec::new();
    let mut cursor = tbs;
    while !cursor.is_empty() {
        let (_, _, next) = split_tlv(cursor).ok_or_else(malformed)?;
        fields.push(&cursor[..cursor.len() - next.len()]);
        cursor = next;
    }
    // version?, serialNumber, signature, issuer, validity, subject, ...
    let subject_index = if fields.first().and_then(|f| f.first()) == Some(&TAG_VERSION) { 5 } else { 4 };
    let slot = fields.get_mut(subject_index).ok_or_else(malformed)?;
    *slot = subject_der;

    let tbs = tlv(TAG_SEQUENCE, &fields.concat());
    let signature = signer
        .sign(&tbs)
        .map_err(|source| Error::Issue { subject: "a client certificate".to_owned(), source })?;
    let signature_bits = tlv(TAG_BIT_STRING, &[&[0u8][..], &signature].concat());
    Ok(tlv(TAG_SEQUENCE, &[tbs.as_slice(), signature_algorithm, &signature_bits].concat()))
}

/// Encodes one tag-length-value with a definite DER length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Splits one TLV off the front of `input`: `(tag, content, rest)`; `None` when truncated.
fn split_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > std::mem::size_of::<usize>() || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip_through_tlv_and_split() {
        for len in [0, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let encoded = tlv(TAG_SEQUENCE, &content);
            let (tag, body, rest) = split_tlv(&encoded).unwrap();
            assert_eq!((tag, body.len(), rest.len()), (TAG_SEQUENCE, len, 0));
        }
    }

    #[test]
    fn truncated_input_is_rejected() {
        let encoded = tlv(TAG_SEQUENCE, &[1, 2, 3]);
        assert!(split_tlv(&encoded[..encoded.len() - 1]).is_none());
        assert!(split_tlv(&[0x30, 0x82, 0x01]).is_none());
    }
}
