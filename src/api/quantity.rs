//! Resource quantities (`500m`, `128Mi`, `1.5G`, `12e6`) read the way upstream's
//! `resource.Quantity` reads them, for everything that counts resources: the API
//! server's QoS class, the scheduler's fit, the volume binder's capacity check and the
//! kubelet's cgroup limits. One parser, because two copies had drifted (one of them
//! did not know `P` and `E`).
//!
//! The grammar is upstream's: an optional sign, digits with an optional fraction, then
//! one suffix — binary (`Ki` `Mi` `Gi` `Ti` `Pi` `Ei`), decimal (`n` `u` `m` `k` `M`
//! `G` `T` `P` `E`, or none) or a decimal exponent (`e3`, `E-2`). No whitespace.
//!
//! Sums and their text (`Amount`) follow upstream too, because quota usage and the
//! LimitRanger's and ResourceQuota's messages print them: a quantity keeps the format
//! its text was written in, and prints in that format's canonical form (`0.5` is
//! `500m`, `1536Mi` stays `1536Mi`, `2048` of a binary quantity is `2Ki`).

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

impl Quantity {
    /// A whole number of units.
    pub fn from_i64(n: i64) -> Self {
        Self::normalized(n < 0, u128::from(n.unsigned_abs()), 0)
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    pub fn is_negative(&self) -> bool {
        self.negative && self.mantissa != 0
    }

    /// `self + other`, exact while the aligned mantissas fit (far beyond any real
    /// resource amount); past that the smaller term is dropped.
    pub fn add(&self, other: &Quantity) -> Quantity {
        if self.is_zero() {
            return *other;
        }
        if other.is_zero() {
            return *self;
        }
        let exponent = self.exponent.min(other.exponent);
        let (Some(a), Some(b)) = (self.aligned(exponent), other.aligned(exponent)) else {
            return if self.magnitude_order() >= other.magnitude_order() {
                *self
            } else {
                *other
            };
        };
        let (negative, mantissa) = match (self.negative, other.negative) {
            (x, y) if x == y => (x, a.saturating_add(b)),
            (x, _) if a >= b => (x, a - b),
            (_, y) => (y, b - a),
        };
        Self::normalized(negative, mantissa, exponent)
    }

    /// `self - other`.
    pub fn sub(&self, other: &Quantity) -> Quantity {
        let negated = Quantity {
            negative: !other.negative,
            ..*other
        };
        self.add(&negated)
    }

    /// The mantissa scaled to `exponent` (which must not exceed the own exponent).
    fn aligned(&self, exponent: i32) -> Option<u128> {
        let power = u32::try_from(self.exponent.checked_sub(exponent)?).ok()?;
        self.mantissa.checked_mul(10u128.checked_pow(power)?)
    }

    /// Digits plus exponent: which power of ten the amount is near.
    fn magnitude_order(&self) -> i64 {
        let digits = if self.mantissa == 0 {
            0
        } else {
            i64::from(self.mantissa.ilog10()) + 1
        };
        digits + i64::from(self.exponent)
    }

    /// The text upstream's `Quantity.String()` gives the amount in `format`.
    pub fn to_text(&self, format: Format) -> String {
        if self.is_zero() {
            return "0".to_string();
        }
        // Upstream keeps nothing finer than a nano: smaller amounts round up.
        let mut q = *self;
        if q.exponent < -9 {
            let divisor = u32::try_from(-9 - q.exponent)
                .ok()
                .and_then(|p| 10u128.checked_pow(p));
            let mantissa = divisor.map_or(1, |d| q.mantissa.div_ceil(d));
            q = Self::normalized(q.negative, mantissa, -9);
        }
        let sign = if q.negative { "-" } else { "" };
        if format == Format::BinarySI
            && let Some(text) = q.binary_text()
        {
            return format!("{sign}{text}");
        }
        // Canonical decimal: the exponent a multiple of three, the mantissa whole.
        let shift = q.exponent.rem_euclid(3);
        let exponent = q.exponent - shift;
        let mantissa = 10u128
            .checked_pow(shift.unsigned_abs())
            .and_then(|f| q.mantissa.checked_mul(f))
            .unwrap_or(u128::MAX);
        let si = match exponent {
            -9 => Some("n"),
            -6 => Some("u"),
            -3 => Some("m"),
            0 => Some(""),
            3 => Some("k"),
            6 => Some("M"),
            9 => Some("G"),
            12 => Some("T"),
            15 => Some("P"),
            18 => Some("E"),
            _ => None,
        };
        match (format, si) {
            (Format::DecimalExponent, _) | (_, None) if exponent != 0 => {
                format!("{sign}{mantissa}e{exponent}")
            }
            (_, suffix) => format!("{sign}{mantissa}{}", suffix.unwrap_or_default()),
        }
    }

    /// A binary-suffixed text for whole amounts of at least 1024; None for the rest,
    /// which upstream prints as decimal rather than round them.
    fn binary_text(&self) -> Option<String> {
        if self.exponent < 0 {
            return None;
        }
        let mut n = self.aligned(0)?;
        if n < 1024 {
            return None;
        }
        let mut power = 0;
        while power < 6 && n.is_multiple_of(1024) {
            n /= 1024;
            power += 1;
        }
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
        Some(format!("{n}{suffix}"))
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self.is_negative(), other.is_negative()) {
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let magnitude = if self.is_zero() || other.is_zero() {
            // Zero has no order of magnitude.
            self.mantissa.cmp(&other.mantissa)
        } else {
            match self.magnitude_order().cmp(&other.magnitude_order()) {
                // Same order of magnitude: the aligned mantissas fit (see `aligned`).
                Ordering::Equal => {
                    let exponent = self.exponent.min(other.exponent);
                    self.aligned(exponent).cmp(&other.aligned(exponent))
                }
                unequal => unequal,
            }
        };
        if self.is_negative() {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// How a quantity was written, which is how upstream prints it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `1.5Gi`: powers of 1024.
    BinarySI,
    /// `500m`, `2k`, `3`: powers of 1000.
    DecimalSI,
    /// `12e6`.
    DecimalExponent,
}

impl Format {
    /// The format of a quantity's text (its suffix decides).
    pub fn of(text: &str) -> Format {
        let suffix = text
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == '+' || c == '-');
        if suffix.ends_with('i') {
            Format::BinarySI
        } else if suffix.starts_with(['e', 'E']) {
            Format::DecimalExponent
        } else {
            Format::DecimalSI
        }
    }
}

/// A quantity with the format it prints in: what upstream's `resource.Quantity` is to
/// its users, for sums (quota usage) and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amount {
    pub quantity: Quantity,
    pub format: Format,
}

impl Amount {
    pub fn parse(text: &str) -> Option<Self> {
        Some(Amount {
            quantity: Quantity::parse(text)?,
            format: Format::of(text),
        })
    }

    /// A count, as upstream's `NewQuantity(n, DecimalSI)`.
    pub fn count(n: i64) -> Self {
        Amount {
            quantity: Quantity::from_i64(n),
            format: Format::DecimalSI,
        }
    }

    /// Upstream's zero usage (`Quantity{Format: DecimalSI}`).
    pub fn zero() -> Self {
        Self::count(0)
    }

    /// Upstream's `Quantity.Add`: the sum keeps this amount's format, unless this
    /// amount is zero, when it takes the other's.
    pub fn add(&self, other: &Amount) -> Amount {
        Amount {
            quantity: self.quantity.add(&other.quantity),
            format: if self.quantity.is_zero() {
                other.format
            } else {
                self.format
            },
        }
    }

    /// Upstream's `Quantity.Sub`, which keeps the format as `add` does.
    pub fn sub(&self, other: &Amount) -> Amount {
        Amount {
            quantity: self.quantity.sub(&other.quantity),
            format: if self.quantity.is_zero() {
                other.format
            } else {
                self.format
            },
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.quantity.to_text(self.format))
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

    /// Upstream's `String()` of parsed quantities (apimachinery's quantity_test.go
    /// table of canonical forms).
    #[test]
    fn canonical_text_keeps_the_written_format() {
        let cases = [
            ("0", "0"),
            ("0.5", "500m"),
            ("100m", "100m"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("1.5", "1500m"),
            ("2000", "2k"),
            ("12000", "12k"),
            ("100", "100"),
            ("1Gi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("1536", "1536"),
            ("0.5Gi", "512Mi"),
            ("1.5Ki", "1536"),
            ("1023Ki", "1023Ki"),
            ("100Mi", "100Mi"),
            ("12e6", "12e6"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("1e-12", "1e-9"),
            ("0.000000000001", "1n"),
            ("-100m", "-100m"),
            ("128974848", "128974848"),
            ("129M", "129M"),
        ];
        for (text, want) in cases {
            let amount = Amount::parse(text).unwrap();
            assert_eq!(amount.to_string(), want, "{text}");
        }
    }

    #[test]
    fn sums_keep_the_first_format() {
        let a = |t: &str| Amount::parse(t).unwrap();
        assert_eq!(a("100m").add(&a("200m")).to_string(), "300m");
        assert_eq!(a("128Mi").add(&a("64Mi")).to_string(), "192Mi");
        assert_eq!(Amount::zero().add(&a("1Gi")).to_string(), "1Gi");
        assert_eq!(a("1").add(&a("500m")).to_string(), "1500m");
        assert_eq!(a("2").sub(&a("3")).to_string(), "-1");
        assert_eq!(a("1Gi").add(&a("-1Gi")).to_string(), "0");
        assert!(q("1") > q("999m"));
        assert!(q("1Ki") > q("1k"));
        assert!(q("-1") < q("0"));
        assert!(q("-2") < q("-1"));
        assert_eq!(q("1").cmp(&q("1000m")), std::cmp::Ordering::Equal);
        assert!(q("0") < q("1n"));
        assert!(q("0") > q("-1m"));
        assert!(q("1E") > q("999P"));
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
