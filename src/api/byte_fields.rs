//! `[]byte` fields (Secret `data`, CRD strings of `format: byte`) read as upstream
//! reads them: Go's `encoding/base64` StdEncoding, which `json.Unmarshal` uses. Two
//! differences from a strict decoder matter to clients: line breaks anywhere in the
//! text are skipped (`base64` without `-w0` and YAML block scalars produce them), and
//! non-zero bits after the last whole byte are ignored (StdEncoding is not `Strict`).
//! Padding is still required, as StdEncoding's.

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

/// Go's StdEncoding: padded standard alphabet, lenient about trailing bits.
const GO_STD_ENCODING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// The bytes `text` stands for, or why upstream would refuse it.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let unbroken: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    GO_STD_ENCODING.decode(unbroken)
}

/// `text` as upstream stores it: decoded, then encoded again, so it reads back
/// without line breaks. None when it does not decode.
pub fn canonical(text: &str) -> Option<String> {
    decode(text).ok().map(|bytes| STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_go_std_encoding_decodes() {
        assert_eq!(decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode("").unwrap(), b"");
        // Line breaks anywhere, CRLF too, even inside the padding.
        assert_eq!(decode("aGVs\nbG8=\n").unwrap(), b"hello");
        assert_eq!(decode("a\r\nGVsbG8\n=").unwrap(), b"hello");
        assert_eq!(decode("\n").unwrap(), b"");
        // Non-zero trailing bits are dropped.
        assert_eq!(decode("YR==").unwrap(), b"a");
        // Still refused: missing padding, other whitespace, other alphabets, garbage.
        for bad in [
            "aGVsbG8",
            "aGVs bG8=",
            "aGVs\tbG8=",
            "_-8=",
            "YQ==YQ==",
            "!",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn canonical_form_has_no_line_breaks() {
        let wrapped = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\nNTY3ODk=\n";
        assert_eq!(
            canonical(wrapped).as_deref(),
            Some(
                "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk="
            )
        );
        assert_eq!(canonical("YR==").as_deref(), Some("YQ=="));
        assert_eq!(canonical("not base64"), None);
    }
}
