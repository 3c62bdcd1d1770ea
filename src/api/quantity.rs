//! Resource quantities (`500m`, `128Mi`, `1.5G`, `12e6`) read the way upstream's
//! `resource.Quantity` reads them, for everything that counts resources: the API
//! server's QoS class, the scheduler's fit, the volume binder's capacity check and the
//! kubelet's cgroup limits. One parser, because two copies had drifted (one of them
//! did not know `P` and `E`).
//!
//! The grammar is upstream's: an optional sign, digits with an optional fraction, then
//! one suffix — binary (`Ki` `Mi` `Gi` `Ti` `Pi` `Ei`), decimal (`n` `u` `m` `k` `M`
//! `G` `T` `P` `E`, or none) or a decimal exponent (`e3`, `E-2`). No whitespace.

/// A parsed quantity: `±mantissa × 10^exponent`, with trailing zeros moved from the
/// mantissa into the exponent, so equal amounts compare equal (`1`, `1000m`, `1e0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exponent: i32,
}

/// Significant digits kept from the text. With at most 18 digits the mantissa stays
/// exact even multiplied by `Ei` (2^60): 10^18 × 2^60 is far below u128's range.
/// Upstream keeps arbitrary precision; nothing we compute needs more than this.
const MAX_DIGITS: usize = 18;

impl Quantity {
    pub fn parse(text: &str) -> Option<Self> {
        let (negative, unsigned) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (whole, rest) = split_digits(unsigned);
        let (fraction, suffix) = match rest.strip_prefix('.') {
            Some(after_point) => split_digits(after_point),
            None => ("", rest),
        };
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let (binary_power, mut exponent) = suffix_scale(suffix)?;
        exponent = exponent.checked_sub(i32::try_from(fraction.len()).ok()?)?;
        let digits = format!("{whole}{fraction}");
        let significant = digits.trim_start_matches('0');
        let kept = &significant[..significant.len().min(MAX_DIGITS)];
        // Digits beyond the kept ones are dropped (rounded toward zero).
        exponent = exponent.checked_add(i32::try_from(significant.len() - kept.len()).ok()?)?;
        let mantissa = if kept.is_empty() {
            0
        } else {
            kept.parse::<u128>().ok()? * 1024u128.pow(binary_power)
        };
        Some(Self::normalized(negative, mantissa, exponent))
    }

    fn normalized(negative: bool, mut mantissa: u128, mut exponent: i32) -> Self {
        if mantissa == 0 {
            return Quantity {
                negative: false,
                mantissa: 0,
                exponent: 0,
            };
        }
        while mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exponent = exponent.saturating_add(1);
        }
        Quantity {
            negative,
            mantissa,
            exponent,
        }
    }

    /// The amount as a float, for ratios and comparisons that tolerate rounding.
    pub fn as_f64(&self) -> f64 {
        // Dividing by an exact power of ten rounds once, so `100m` is exactly 0.1.
        let magnitude = if self.exponent >= 0 {
            self.mantissa as f64 * 10f64.powi(self.exponent)
        } else {
            self.mantissa as f64 / 10f64.powi(-self.exponent)
        };
        if self.negative { -magnitude } else { magnitude }
    }

    /// Whole units, rounded away from zero (upstream's `Value()`: 0.5 bytes is 1).
    pub fn value(&self) -> i64 {
        self.scaled(0)
    }

    /// Thousandths, rounded away from zero (upstream's `MilliValue()`: 0.5m CPU is 1m).
    pub fn milli_value(&self) -> i64 {
        self.scaled(3)
    }

    /// The amount in units of 10^-scale, rounded away from zero and saturated at i64's
    /// bounds, as upstream's `ScaledValue`.
    fn scaled(&self, scale: i32) -> i64 {
        let exponent = i64::from(self.exponent) + i64::from(scale);
        let magnitude = match u32::try_from(exponent.unsigned_abs()) {
            _ if self.mantissa == 0 => 0,
            Ok(power) if exponent >= 0 => 10u128
                .checked_pow(power)
                .and_then(|factor| self.mantissa.checked_mul(factor))
                .unwrap_or(u128::MAX),
            Ok(power) => match 10u128.checked_pow(power) {
                Some(divisor) => self.mantissa.div_ceil(divisor),
                // Less than one unit, but not zero.
                None => 1,
            },
            Err(_) if exponent >= 0 => u128::MAX,
            Err(_) => 1,
        };
        let magnitude = i64::try_from(magnitude).unwrap_or(i64::MAX);
        if self.negative { -magnitude } else { magnitude }
    }
}

/// The leading ASCII digits of `text` and what follows them.
fn split_digits(text: &str) -> (&str, &str) {
    let end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// A suffix as (power of 1024, power of ten).
fn suffix_scale(suffix: &str) -> Option<(u32, i32)> {
    Some(match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (1, 0),
        "Mi" => (2, 0),
        "Gi" => (3, 0),
        "Ti" => (4, 0),
        "Pi" => (5, 0),
        "Ei" => (6, 0),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            // Only a signed integer: Rust's parse takes the sign and digits upstream takes.
            (0, exponent.parse::<i32>().ok()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap_or_else(|| panic!("{text:?} should parse"))
    }

    #[test]
    fn the_documentation_examples_are_the_same_amount() {
        // "Resource Management for Pods and Containers": these are all roughly 129 MB.
        for text in ["128974848", "129e6", "129M", "128974848000m", "123Mi"] {
            let bytes = q(text).value();
            assert!(
                (128_974_848..=129_000_000).contains(&bytes),
                "{text}: {bytes}"
            );
        }
        assert_eq!(q("128974848"), q("128974848000m"));
        assert_eq!(q("129e6"), q("129M"));
        assert_eq!(q("123Mi").value(), 123 * 1024 * 1024);
        // CPU: 0.1 is 100m; 0.5 is half a CPU.
        assert_eq!(q("0.1"), q("100m"));
        assert_eq!(q("0.1").milli_value(), 100);
        assert_eq!(q("0.5").milli_value(), 500);
        // The Quantity reference: 1.5 is 1500m, 1.5Gi is 1536Mi.
        assert_eq!(q("1.5"), q("1500m"));
        assert_eq!(q("1.5Gi"), q("1536Mi"));
        // "400m" of memory is 0.4 bytes, which upstream rounds up to 1.
        assert_eq!(q("400m").value(), 1);
    }

    #[test]
    fn every_suffix() {
        let cases: &[(&str, f64)] = &[
            ("1n", 1e-9),
            ("1u", 1e-6),
            ("1m", 1e-3),
            ("1", 1.0),
            ("1k", 1e3),
            ("1M", 1e6),
            ("1G", 1e9),
            ("1T", 1e12),
            ("1P", 1e15),
            ("1E", 1e18),
            ("1Ki", 1024.0),
            ("1Mi", 1048576.0),
            ("1Gi", 1073741824.0),
            ("1Ti", 1099511627776.0),
            ("1Pi", 1125899906842624.0),
            ("1Ei", 1152921504606846976.0),
            ("1e3", 1e3),
            ("1E3", 1e3),
            ("1e-3", 1e-3),
            ("1E+3", 1e3),
            ("+2", 2.0),
            ("-2.5", -2.5),
            (".5", 0.5),
            ("5.", 5.0),
        ];
        for (text, want) in cases {
            assert_eq!(q(text).as_f64(), *want, "{text}");
        }
        assert_eq!(q("1P").value(), 1_000_000_000_000_000);
        assert_eq!(q("1Ei").value(), 1 << 60);
        assert_eq!(q("0").value(), 0);
        assert_eq!(q("-0"), q("0"));
    }

    #[test]
    fn rounding_is_away_from_zero_and_saturates() {
        assert_eq!(q("0.5m").milli_value(), 1);
        assert_eq!(q("1n").value(), 1);
        assert_eq!(q("-1n").value(), -1);
        assert_eq!(q("1e-100").value(), 1);
        assert_eq!(q("100E").value(), i64::MAX);
        assert_eq!(q("1e100").milli_value(), i64::MAX);
        assert_eq!(q("-1e100").value(), -i64::MAX);
    }

    #[test]
    fn malformed_text_is_refused() {
        // Upstream's own invalid cases, and whitespace, which it does not trim.
        for text in [
            "", "x", "aoeu", "1.1.M", "1+1.0M", "0.1mi", "0.1am", ".5i", "1i", "-3.01i", "-3.01e-",
            "1e", "1e3.5", " 1", "1 ", "-", ".", "1Ki2", "inf", "NaN",
        ] {
            assert_eq!(Quantity::parse(text), None, "{text:?}");
        }
    }
}
