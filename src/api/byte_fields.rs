//! `[]byte` fields (Secret `data`, CRD strings of `format: byte`) read as upstream
//! reads them: Go's `encoding/base64` StdEncoding, which `json.Unmarshal` uses. Two
//! differences from a strict decoder matter to clients: line breaks anywhere in the
//! text are skipped (`base64` without `-w0` and YAML block scalars produce them), and
//! non-zero bits after the last whole byte are ignored (StdEncoding is not `Strict`).
//! Padding is still required, as StdEncoding's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Why `text` is not base64 as Go reads it: `base64.CorruptInputError`, the offset of
/// the first byte it could not take (line breaks counted), which upstream's decoder
/// reports verbatim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("illegal base64 data at input byte {0}")]
pub struct CorruptInput(pub usize);

/// The bytes `text` stands for, decoded as Go's `base64.StdEncoding.Decode` does it
/// quantum by quantum, so a refusal names the byte Go would name.
pub fn decode(text: &str) -> Result<Vec<u8>, CorruptInput> {
    let src = text.as_bytes();
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    loop {
        let (next, quantum) = decode_quantum(src, si)?;
        si = next;
        match quantum {
            Some(bytes) => out.extend_from_slice(&bytes),
            None => return Ok(out),
        }
        if si >= src.len() {
            return Ok(out);
        }
    }
}

/// The value of a base64 alphabet character, `None` for any other byte.
fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// One four-character quantum from `si`, as Go's `decodeQuantum`: the next position
/// and the quantum's bytes (`None` at the end of the input). Line breaks are skipped;
/// padding ends the input, and anything but line breaks after it is corrupt.
fn decode_quantum(src: &[u8], mut si: usize) -> Result<(usize, Option<Vec<u8>>), CorruptInput> {
    let mut sextets = [0u8; 4];
    let mut len = 4;
    let mut j = 0;
    let mut trailing = None;
    while j < 4 {
        if si == src.len() {
            if j == 0 {
                return Ok((si, None));
            }
            // Padding is required: a short last quantum is corrupt.
            return Err(CorruptInput(si - j));
        }
        let c = src[si];
        si += 1;
        if let Some(value) = sextet(c) {
            sextets[j] = value;
            j += 1;
            continue;
        }
        if c == b'\n' || c == b'\r' {
            continue;
        }
        if c != b'=' {
            return Err(CorruptInput(si - 1));
        }
        match j {
            0 | 1 => return Err(CorruptInput(si - 1)),
            2 => {
                // A second `=` must follow, line breaks allowed between.
                while si < src.len() && matches!(src[si], b'\n' | b'\r') {
                    si += 1;
                }
                if si == src.len() {
                    return Err(CorruptInput(src.len()));
                }
                if src[si] != b'=' {
                    return Err(CorruptInput(si - 1));
                }
                si += 1;
            }
            _ => {}
        }
        while si < src.len() && matches!(src[si], b'\n' | b'\r') {
            si += 1;
        }
        if si < src.len() {
            trailing = Some(CorruptInput(si));
        }
        len = j;
        break;
    }
    let value = u32::from(sextets[0]) << 18
        | u32::from(sextets[1]) << 12
        | u32::from(sextets[2]) << 6
        | u32::from(sextets[3]);
    let bytes = [(value >> 16) as u8, (value >> 8) as u8, value as u8];
    if let Some(err) = trailing {
        return Err(err);
    }
    // StdEncoding is not strict: bits after the last whole byte are dropped.
    Ok((si, Some(bytes[..len - 1].to_vec())))
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
    fn refusals_name_the_byte_go_names() {
        let at = |text: &str| decode(text).unwrap_err().0;
        assert_eq!(at("!"), 0);
        assert_eq!(at("aGVs bG8="), 4);
        assert_eq!(at("not base64"), 3);
        // A short last quantum is corrupt where it started.
        assert_eq!(at("aGVsbG8"), 4);
        assert_eq!(at("YQ"), 0);
        // Padding in the wrong place, or too little of it.
        assert_eq!(at("Y==="), 1);
        assert_eq!(at("YQ="), 3);
        assert_eq!(at("YQ=x"), 2);
        // Anything after the padding but line breaks.
        assert_eq!(at("YQ==YQ=="), 4);
        assert_eq!(at("YQ==\nx"), 5);
        // Line breaks count in the offset.
        assert_eq!(at("aG\nVs!"), 5);
        assert_eq!(
            CorruptInput(4).to_string(),
            "illegal base64 data at input byte 4"
        );
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
