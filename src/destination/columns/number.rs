//! Exact facts about a number's source text: its digits, whether it fits a
//! machine integer or a double, and its plain decimal spelling.
//!
//! serde_json keeps a number's source digits (`arbitrary_precision`), so
//! nothing here goes through a float unless it checks the round trip.

/// A JSON number (or a numeric string under `fields.types: decimal`),
/// normalized as `digits × 10^exponent` with no leading or trailing zeros
/// in `digits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactNumber {
    pub negative: bool,
    /// Significant digits; empty for zero.
    pub digits: String,
    pub exponent: i64,
    /// Written without a fraction or an exponent (`12`, not `12.0` or `1e3`).
    pub integer_syntax: bool,
}

/// The integer type that holds an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IntegerWidth {
    I64,
    I128,
    /// Beyond the 128-bit range.
    Wider,
}

/// Largest integer magnitude a double holds exactly together with its
/// neighbours (2^53).
const DOUBLE_EXACT_INTEGER: u64 = 1 << 53;

impl ExactNumber {
    /// Parses JSON number syntax (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
    /// A leading `+`, spaces, `NaN` or `Infinity` are not numbers here.
    pub fn parse(text: &str) -> Option<ExactNumber> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent_text) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let (integer_part, fraction_part) = match mantissa.split_once('.') {
            Some((integer, fraction)) => (integer, Some(fraction)),
            None => (mantissa, None),
        };

        let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(integer_part) || (integer_part.len() > 1 && integer_part.starts_with('0')) {
            return None;
        }
        if fraction_part.is_some_and(|fraction| !all_digits(fraction)) {
            return None;
        }
        let exponent = match exponent_text {
            None => 0,
            Some(exponent) => parse_exponent(exponent)?,
        };

        let fraction = fraction_part.unwrap_or("");
        let mut digits = format!("{integer_part}{fraction}");
        // Saturating: an exponent near i64::MAX is out of every range anyway.
        let mut exponent = exponent.saturating_sub(fraction.len() as i64);
        let trailing = digits.len() - digits.trim_end_matches('0').len();
        digits.truncate(digits.len() - trailing);
        exponent = exponent.saturating_add(trailing as i64);
        let digits = digits.trim_start_matches('0').to_string();
        if digits.is_empty() {
            exponent = 0;
        }

        Some(ExactNumber {
            negative: negative && !digits.is_empty(),
            digits,
            exponent,
            integer_syntax: fraction_part.is_none() && exponent_text.is_none(),
        })
    }

    /// Digits before the decimal point (0 for `0.5`); saturates at `u32::MAX`.
    pub fn integer_digits(&self) -> u32 {
        let count = (self.digits.len() as i64).saturating_add(self.exponent);
        count.clamp(0, u32::MAX as i64) as u32
    }

    /// Digits after the decimal point that are needed (`1.50` needs 1).
    pub fn scale(&self) -> u32 {
        (-self.exponent).clamp(0, u32::MAX as i64) as u32
    }

    /// The narrowest integer type holding the value; `None` for a fraction.
    pub fn integer_width(&self) -> Option<IntegerWidth> {
        if self.exponent < 0 {
            return None;
        }
        let Some(value) = self.to_i128() else {
            return Some(IntegerWidth::Wider);
        };
        if i64::try_from(value).is_ok() {
            Some(IntegerWidth::I64)
        } else {
            Some(IntegerWidth::I128)
        }
    }

    /// The value as an i128, when it is an integer in that range.
    pub fn to_i128(&self) -> Option<i128> {
        if self.exponent < 0 || self.integer_digits() > 39 {
            return None;
        }
        let text = self.plain_text();
        text.parse::<i128>().ok()
    }

    /// Tells whether a double represents this value exactly. Integers must
    /// be within 2^53 in magnitude, where every neighbour is a double too.
    /// Numbers written with a fraction or an exponent must have a shortest
    /// double spelling with the same digits (`0.1` yes, `0.1000000000000000000001` no).
    pub fn exact_in_double(&self) -> bool {
        if self.integer_syntax {
            return self
                .to_i128()
                .is_some_and(|value| value.unsigned_abs() <= u128::from(DOUBLE_EXACT_INTEGER));
        }
        let Ok(double) = self.scientific_text().parse::<f64>() else {
            return false;
        };
        if !double.is_finite() {
            return false;
        }
        // Rust prints the shortest digits that parse back to the same
        // double, so equal digits mean the double is this decimal value.
        ExactNumber::parse(&format!("{double:e}").replace("e", "E"))
            .is_some_and(|back| back.digits == self.digits && back.exponent == self.exponent)
    }

    /// Plain decimal spelling without an exponent: `-12.5`, `1000`, `0.001`.
    /// Callers check [`ExactNumber::integer_digits`] and [`ExactNumber::scale`]
    /// first, because `1e999999` would spell a million digits.
    pub fn plain_text(&self) -> String {
        let sign = if self.negative { "-" } else { "" };
        if self.digits.is_empty() {
            return "0".to_string();
        }
        if self.exponent >= 0 {
            let zeros = "0".repeat(self.exponent as usize);
            return format!("{sign}{}{zeros}", self.digits);
        }
        let scale = self.scale() as usize;
        if self.digits.len() > scale {
            let (integer, fraction) = self.digits.split_at(self.digits.len() - scale);
            format!("{sign}{integer}.{fraction}")
        } else {
            let zeros = "0".repeat(scale - self.digits.len());
            format!("{sign}0.{zeros}{}", self.digits)
        }
    }

    fn scientific_text(&self) -> String {
        let sign = if self.negative { "-" } else { "" };
        let digits = if self.digits.is_empty() {
            "0"
        } else {
            &self.digits
        };
        format!("{sign}{digits}E{}", self.exponent)
    }
}

fn parse_exponent(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Exponents too large for i64 saturate: such a number fits no column
    // except text, and its source text is kept as it is.
    let magnitude = digits.parse::<i64>().unwrap_or(i64::MAX);
    Some(if text.starts_with('-') {
        -magnitude
    } else {
        magnitude
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> ExactNumber {
        ExactNumber::parse(text).unwrap()
    }

    #[test]
    fn parse_normalizes_digits() {
        let value = number("-12.500");
        assert_eq!(value.digits, "125");
        assert_eq!(value.exponent, -1);
        assert!(value.negative);
        assert!(!value.integer_syntax);
        assert_eq!(number("1000").digits, "1");
        assert_eq!(number("1000").exponent, 3);
        assert!(number("1000").integer_syntax);
        assert_eq!(number("0").digits, "");
        assert!(!number("-0.0").negative);
    }

    #[test]
    fn parse_rejects_non_json_numbers() {
        for text in [
            "", "+1", "01", "1.", ".5", "1e", "NaN", "Infinity", " 1", "1_000", "0x10",
        ] {
            assert_eq!(ExactNumber::parse(text), None, "{text}");
        }
    }

    #[test]
    fn digits_and_scale() {
        assert_eq!(number("0.5").integer_digits(), 0);
        assert_eq!(number("0.5").scale(), 1);
        assert_eq!(number("123.450").scale(), 2);
        assert_eq!(number("123.450").integer_digits(), 3);
        assert_eq!(number("1.5e300").integer_digits(), 301);
        assert_eq!(number("1e-7").scale(), 7);
        assert_eq!(number("1e99999999999999999999").integer_digits(), u32::MAX);
    }

    #[test]
    fn integer_widths() {
        assert_eq!(
            number("9223372036854775807").integer_width(),
            Some(IntegerWidth::I64)
        );
        assert_eq!(
            number("-9223372036854775808").integer_width(),
            Some(IntegerWidth::I64)
        );
        assert_eq!(
            number("9223372036854775808").integer_width(),
            Some(IntegerWidth::I128)
        );
        let i128_max = "170141183460469231731687303715884105727";
        assert_eq!(number(i128_max).integer_width(), Some(IntegerWidth::I128));
        let beyond = "170141183460469231731687303715884105728";
        assert_eq!(number(beyond).integer_width(), Some(IntegerWidth::Wider));
        assert_eq!(number("1.5").integer_width(), None);
        assert_eq!(number("1e3").integer_width(), Some(IntegerWidth::I64));
    }

    #[test]
    fn double_exactness() {
        assert!(number("9007199254740992").exact_in_double());
        assert!(!number("9007199254740993").exact_in_double());
        assert!(number("0.1").exact_in_double());
        assert!(number("1.10").exact_in_double());
        assert!(number("1.5E+300").exact_in_double());
        assert!(number("0.30000000000000004").exact_in_double());
        assert!(!number("3.141592653589793238").exact_in_double());
        assert!(!number("1e400").exact_in_double());
        assert!(number("-0.0").exact_in_double());
    }

    #[test]
    fn plain_text_spelling() {
        assert_eq!(number("-12.500").plain_text(), "-12.5");
        assert_eq!(number("1e3").plain_text(), "1000");
        assert_eq!(number("1.5e-3").plain_text(), "0.0015");
        assert_eq!(number("0").plain_text(), "0");
        assert_eq!(number("123").plain_text(), "123");
    }
}
