//! Query-parameter values as upstream's parameter codec decodes them
//! (`k8s.io/apimachinery/pkg/runtime/conversion.go`): the API server and the kubelet
//! read every boolean and integer parameter through these, so `?watch=True`,
//! `?limit=` and `?tailLines=abc` mean the same to each of them as to upstream.

/// A boolean query parameter that is present, as upstream's `Convert_Slice_string_To_bool`
/// (and its `*bool` twin) decode every one of them (`watch`, `allowWatchBookmarks`,
/// `sendInitialEvents`, `force`, the kubelet's `follow`, …). This is not Go's
/// `strconv.ParseBool`: only `0` and any casing of `false` are false, everything else,
/// even an empty value (`?watch=`) or `f`, is true, and no value is ever an error.
/// Callers treat an absent parameter as false.
pub fn parse_bool(value: &str) -> bool {
    !(value == "0" || equal_fold_false(value))
}

/// Go's `strings.EqualFold(value, "false")`: Unicode simple case folding, under which the
/// long s `ſ` (U+017F) folds to `s`; no other non-ASCII character folds to a letter of
/// "false".
fn equal_fold_false(value: &str) -> bool {
    let mut chars = value.chars().map(|c| match c {
        'ſ' => 's',
        c => c.to_ascii_lowercase(),
    });
    "false".chars().all(|f| chars.next() == Some(f)) && chars.next().is_none()
}

/// Why an integer was refused, worded as Go's `strconv.ParseInt`/`ParseUint` word it;
/// upstream answers with exactly this text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("strconv.{func}: parsing {}: {}", go_quote(.value), if *.out_of_range { "value out of range" } else { "invalid syntax" })]
pub struct IntError {
    func: &'static str,
    value: String,
    out_of_range: bool,
}

impl IntError {
    fn new(func: &'static str, value: &str, out_of_range: bool) -> Self {
        IntError {
            func,
            value: value.to_string(),
            out_of_range,
        }
    }

    pub fn is_out_of_range(&self) -> bool {
        self.out_of_range
    }
}

/// An integer parameter that is present (`limit`, `timeoutSeconds`,
/// `gracePeriodSeconds`, `tailLines`, `sinceSeconds`, `limitBytes`, …), as upstream's
/// `Convert_Slice_string_To_int64` decodes the first of its values: Go's
/// `strconv.ParseInt(value, 10, 64)`. An optional `+` or `-`, then ASCII digits only;
/// an empty value (`?limit=`) is a syntax error, not zero, and so are blanks and `_`.
/// Overflow is reported as out of range once the digits read so far exceed 64 bits,
/// even when a bad character follows, as Go does.
pub fn parse_int64(value: &str) -> Result<i64, IntError> {
    let (negative, digits) = match value.as_bytes().first() {
        Some(b'+') => (false, &value[1..]),
        Some(b'-') => (true, &value[1..]),
        _ => (false, value),
    };
    let range = || IntError::new("ParseInt", value, true);
    let magnitude = digits_u64(digits).map_err(|e| IntError {
        func: "ParseInt",
        value: value.to_string(),
        ..e
    })?;
    if negative {
        0i64.checked_sub_unsigned(magnitude).ok_or_else(range)
    } else {
        i64::try_from(magnitude).map_err(|_| range())
    }
}

/// Go's `strconv.ParseUint(value, 10, 64)`: ASCII digits only, no sign. Upstream reads
/// a resourceVersion with it.
pub fn parse_uint64(value: &str) -> Result<u64, IntError> {
    digits_u64(value)
}

fn digits_u64(digits: &str) -> Result<u64, IntError> {
    if digits.is_empty() {
        return Err(IntError::new("ParseUint", digits, false));
    }
    let mut magnitude: u64 = 0;
    for c in digits.bytes() {
        if !c.is_ascii_digit() {
            return Err(IntError::new("ParseUint", digits, false));
        }
        magnitude = magnitude
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(c - b'0')))
            .ok_or_else(|| IntError::new("ParseUint", digits, true))?;
    }
    Ok(magnitude)
}

/// A resourceVersion as upstream's storage versioner reads it: empty and `"0"` are 0,
/// anything else Go's `ParseUint`. The error is the text of the `InvalidError` it
/// returns (`resourceVersion: Invalid value: "x": strconv.ParseUint: …`).
pub fn parse_resource_version(value: &str) -> Result<u64, String> {
    if value.is_empty() || value == "0" {
        return Ok(0);
    }
    parse_uint64(value)
        .map_err(|e| format!("resourceVersion: Invalid value: {}: {e}", go_quote(value)))
}

/// A duration parameter (`?timeout=32s`, as kubectl sends it) as Go's
/// `time.ParseDuration` reads it: a sign, then one or more decimal numbers each with a
/// unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), or a bare `0`. Returns signed
/// nanoseconds; the error is Go's text.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", time_quote(text));
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let mut whole: u64 = 0;
        for c in rest[..digits].bytes() {
            whole = whole
                .checked_mul(10)
                .map(|w| w + u64::from(c - b'0'))
                .filter(|w| *w <= LIMIT)
                .ok_or_else(invalid)?;
        }
        rest = &rest[digits..];
        let (mut fraction, mut scale, mut post) = (0u64, 1f64, false);
        if let Some(after) = rest.strip_prefix('.') {
            let count = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            post = count > 0;
            let mut overflow = false;
            for c in after[..count].bytes() {
                // Digits past what fits add no precision, as Go's leadingFraction.
                if overflow || fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                fraction = fraction * 10 + u64::from(c - b'0');
                scale *= 10.0;
            }
            rest = &after[count..];
        }
        if digits == 0 && !post {
            return Err(invalid());
        }
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c != '.' && !c.is_ascii_digit())
                .len();
        if unit_len == 0 {
            return Err(format!(
                "time: missing unit in duration {}",
                time_quote(text)
            ));
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    time_quote(unit),
                    time_quote(text)
                ));
            }
        };
        if whole > LIMIT / nanos {
            return Err(invalid());
        }
        let mut value = whole * nanos;
        if fraction > 0 {
            value += (fraction as f64 * (nanos as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total = total
            .checked_add(value)
            .filter(|t| *t <= LIMIT)
            .ok_or_else(invalid)?;
    }
    if negative {
        Ok(0i64.checked_sub_unsigned(total).unwrap_or(i64::MIN))
    } else {
        i64::try_from(total).map_err(|_| invalid())
    }
}

/// Go's `time` package quoting: printable ASCII as is (`"` and `\\` escaped), every
/// other byte as `\\xNN`.
fn time_quote(text: &str) -> String {
    let mut out = String::from('"');
    for c in text.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out.push('"');
    out
}

/// `text` as Go's `strconv.Quote` (and so `%q`) writes it: in double quotes, `"` and
/// `\` escaped, the usual C escapes for control characters, other unprintable
/// characters as `\xNN`, `\uNNNN` or `\UNNNNNNNN`. Go's printability is Unicode's
/// (letters, marks, numbers, punctuation, symbols and the ASCII space); this treats
/// everything else that is not a control, a blank or a format character as printable.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            ' ' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Whether Go's `strconv.IsPrint` holds for a non-ASCII-control character.
fn go_printable(c: char) -> bool {
    // Format characters (Cf) Go escapes; soft hyphen, zero-width and bidi marks,
    // line/paragraph separators, the byte-order mark.
    const FORMAT: &[(u32, u32)] = &[
        (0x80, 0x9f),
        (0xad, 0xad),
        (0x600, 0x605),
        (0x61c, 0x61c),
        (0x6dd, 0x6dd),
        (0x70f, 0x70f),
        (0x180e, 0x180e),
        (0x200b, 0x200f),
        (0x2028, 0x202e),
        (0x2060, 0x206f),
        (0xd800, 0xdfff),
        (0xe000, 0xf8ff),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0xe0001, 0xe007f),
        (0xf0000, 0x10ffff),
    ];
    let code = c as u32;
    !c.is_whitespace() && !FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_zero_and_false_in_any_case_are_false() {
        for v in ["0", "false", "False", "FALSE", "fAlSe", "falſe"] {
            assert!(!parse_bool(v), "{v:?}");
        }
    }

    #[test]
    fn everything_else_is_true() {
        for v in [
            "1", "t", "T", "true", "True", "TRUE", "", "f", "F", "no", "yes", "00", " false",
            "false ", "falsey", "fals",
        ] {
            assert!(parse_bool(v), "{v:?}");
        }
    }

    #[test]
    fn integers_parse_as_go_parse_int() {
        for (text, want) in [
            ("0", 0),
            ("500", 500),
            ("+7", 7),
            ("-1", -1),
            ("007", 7),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(parse_int64(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn integer_errors_are_worded_as_go() {
        let message = |text: &str| parse_int64(text).unwrap_err().to_string();
        assert_eq!(
            message(""),
            r#"strconv.ParseInt: parsing "": invalid syntax"#
        );
        assert_eq!(
            message("abc"),
            r#"strconv.ParseInt: parsing "abc": invalid syntax"#
        );
        for bad in [
            "+", "-", " 1", "1 ", "1_000", "0x10", "1.5", "1e3", "--1", "１",
        ] {
            assert!(
                parse_int64(bad).is_err_and(|e| !e.is_out_of_range()),
                "{bad:?}"
            );
        }
        assert_eq!(
            message("9223372036854775808"),
            r#"strconv.ParseInt: parsing "9223372036854775808": value out of range"#
        );
        assert!(parse_int64("-9223372036854775809").is_err_and(|e| e.is_out_of_range()));
        // Overflow is seen before the bad character after it, as Go's loop sees it.
        assert_eq!(
            message("-99999999999999999999x"),
            r#"strconv.ParseInt: parsing "-99999999999999999999x": value out of range"#
        );
        assert!(parse_int64("9x").is_err_and(|e| !e.is_out_of_range()));
    }

    #[test]
    fn resource_versions_parse_as_upstreams_versioner() {
        assert_eq!(parse_resource_version(""), Ok(0));
        assert_eq!(parse_resource_version("0"), Ok(0));
        assert_eq!(parse_resource_version("42"), Ok(42));
        assert_eq!(
            parse_resource_version("abc").unwrap_err(),
            r#"resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax"#
        );
    }

    #[test]
    fn durations_parse_as_go_parse_duration() {
        for (text, nanos) in [
            ("32s", 32_000_000_000),
            ("0", 0),
            ("-0", 0),
            ("1h2m3.5s", 3_723_500_000_000),
            ("1.5h", 5_400_000_000_000),
            (".5s", 500_000_000),
            ("300ms", 300_000_000),
            ("2µs", 2_000),
            ("-1m", -60_000_000_000),
        ] {
            assert_eq!(parse_duration(text), Ok(nanos), "{text}");
        }
        for (text, message) in [
            ("", r#"time: invalid duration """#),
            ("abc", r#"time: invalid duration "abc""#),
            ("5", r#"time: missing unit in duration "5""#),
            ("5x", r#"time: unknown unit "x" in duration "5x""#),
            (".s", r#"time: invalid duration ".s""#),
            ("1s ", r#"time: unknown unit "s " in duration "1s ""#),
            ("99999999999h", r#"time: invalid duration "99999999999h""#),
            (
                "5é",
                r#"time: unknown unit "\xc3\xa9" in duration "5\xc3\xa9""#,
            ),
        ] {
            assert_eq!(parse_duration(text).unwrap_err(), message, "{text:?}");
        }
    }

    #[test]
    fn unsigned_integers_parse_as_go_parse_uint() {
        assert_eq!(parse_uint64("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_uint64("-1").unwrap_err().to_string(),
            r#"strconv.ParseUint: parsing "-1": invalid syntax"#
        );
        assert_eq!(
            parse_uint64("18446744073709551616")
                .unwrap_err()
                .to_string(),
            r#"strconv.ParseUint: parsing "18446744073709551616": value out of range"#
        );
    }

    #[test]
    fn quoting_follows_go() {
        assert_eq!(go_quote("plain"), r#""plain""#);
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\n\t\u{0}\u{7f}"), r#""\n\t\x00\x7f""#);
        assert_eq!(go_quote("é ü"), "\"é ü\"");
        assert_eq!(go_quote("\u{a0}\u{200b}"), r#""\u00a0\u200b""#);
        assert_eq!(go_quote("\u{e0001}"), r#""\U000e0001""#);
    }
}
