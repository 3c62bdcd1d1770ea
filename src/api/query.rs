//! Query-parameter values as upstream's parameter codec decodes them.

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

#[cfg(test)]
mod tests {
    use super::parse_bool;

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
}
