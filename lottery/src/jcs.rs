//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! Two writers share one string escaper:
//! - [`WriteCanonical`], implemented by the draw's own types, writes their canonical form
//!   straight into a byte buffer with the keys already in canonical order. It is what the
//!   transcript hash is computed over, and it is fast enough for a million leaves.
//! - [`canonicalize`] canonicalises any `serde_json::Value` (keys sorted by UTF-16 code units,
//!   numbers in ECMAScript form). It is proven here against the examples of RFC 8785, and the
//!   tests check that both writers agree on every transcript type.

use std::cmp::Ordering;

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    #[error("NaN and infinities have no JSON form")]
    NonFinite,
    #[error("not JSON: {0}")]
    Syntax(String),
}

/// A type that writes its own RFC 8785 form.
pub trait WriteCanonical {
    fn write_canonical(&self, out: &mut Vec<u8>);

    fn to_canonical_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_canonical(&mut out);
        out
    }
}

/// Writes an object member by member. Keys must come in canonical order; debug builds check
/// that, so a misordered writer fails every test that serialises it.
pub(crate) struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    previous: Option<&'static str>,
}

impl<'a> ObjectWriter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter {
            out,
            previous: None,
        }
    }

    pub(crate) fn field<T: WriteCanonical + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> &mut Self {
        if let Some(previous) = self.previous {
            debug_assert!(
                compare_utf16(previous, key) == Ordering::Less,
                "keys out of canonical order: {previous} then {key}"
            );
            self.out.push(b',');
        }
        self.previous = Some(key);
        write_string(self.out, key);
        self.out.push(b':');
        value.write_canonical(self.out);
        self
    }

    pub(crate) fn finish(&mut self) {
        self.out.push(b'}');
    }
}

impl WriteCanonical for str {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_string(out, self);
    }
}

impl WriteCanonical for String {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_string(out, self);
    }
}

impl WriteCanonical for u64 {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        // Integers below 2^53 print identically in ECMAScript; the types that hold them
        // refuse anything larger.
        let mut buffer = itoa_buffer();
        out.extend_from_slice(format_u64(*self, &mut buffer));
    }
}

impl<T: WriteCanonical> WriteCanonical for Option<T> {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        match self {
            Some(value) => value.write_canonical(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl<T: WriteCanonical> WriteCanonical for [T] {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, item) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            item.write_canonical(out);
        }
        out.push(b']');
    }
}

impl<T: WriteCanonical> WriteCanonical for Vec<T> {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        self.as_slice().write_canonical(out);
    }
}

/// Writes bytes as a JSON string of lowercase hex digits, without an intermediate `String`.
pub(crate) fn write_hex_string(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    // Through a stack buffer: one copy per 32 bytes instead of a capacity check per digit
    // (a million leaves each carry a 64-digit `idc`).
    for chunk in bytes.chunks(32) {
        let mut digits = [0u8; 64];
        for (pair, byte) in digits.chunks_exact_mut(2).zip(chunk) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 15)];
        }
        out.extend_from_slice(&digits[..chunk.len() * 2]);
    }
    out.push(b'"');
}

/// Writes a JSON string as RFC 8785 (ECMAScript `JSON.stringify`) does: `"` and `\` and the
/// control characters below U+0020 are escaped (with the short forms where they exist,
/// otherwise `\u00xx` in lowercase hex); everything else is written as UTF-8.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(DIGITS[usize::from(byte >> 4)]);
            out.push(DIGITS[usize::from(byte & 15)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn itoa_buffer() -> [u8; 20] {
    [0; 20]
}

fn format_u64(mut value: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &buffer[at..]
}

/// Canonicalises JSON text (RFC 8785).
pub fn canonicalize_str(json: &str) -> Result<Vec<u8>, JcsError> {
    let value: Value = serde_json::from_str(json).map_err(|e| JcsError::Syntax(e.to_string()))?;
    canonicalize(&value)
}

/// Canonicalises a JSON value (RFC 8785).
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            let text = match (number.as_u64(), number.as_i64()) {
                (Some(n), _) if n < (1 << 53) => n.to_string(),
                (_, Some(n)) if n.unsigned_abs() < (1 << 53) => n.to_string(),
                // Beyond 2^53, and every fraction, is an IEEE double in ECMAScript.
                _ => ecmascript_number(number.as_f64().ok_or(JcsError::NonFinite)?)?,
            };
            out.extend_from_slice(text.as_bytes());
        }
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|a, b| compare_utf16(a.0, b.0));
            out.push(b'{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_value(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// RFC 8785 sorts keys by their UTF-16 code units, not by code points or UTF-8 bytes (they
/// differ above U+FFFF).
pub fn compare_utf16(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// ECMAScript `Number.prototype.toString` for a finite double (ECMA-262, Number::toString),
/// from the shortest round-trip digits that Rust's `{:e}` formatting produces.
pub fn ecmascript_number(value: f64) -> Result<String, JcsError> {
    if !value.is_finite() {
        return Err(JcsError::NonFinite);
    }
    if value == 0.0 {
        return Ok("0".to_owned()); // also for -0
    }
    let sign = if value < 0.0 { "-" } else { "" };
    let (digits, exponent) = shortest_digits(value.abs())?;
    let k = digits.len() as i32;
    let n = exponent + 1; // value = 0.d1d2...dk * 10^n
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let e_sign = if e < 0 { '-' } else { '+' };
        if k == 1 {
            format!("{digits}e{e_sign}{}", e.abs())
        } else {
            format!("{}.{}e{e_sign}{}", &digits[..1], &digits[1..], e.abs())
        }
    };
    Ok(format!("{sign}{body}"))
}

/// The shortest decimal digits that round-trip to `value`, and the decimal exponent of the
/// first digit. Rust's `{:e}` gives the shortest, nearest digits but resolves an exact tie
/// between two candidates upwards; ECMAScript wants the even one, so ties are detected from
/// the exact expansion and resolved here.
fn shortest_digits(value: f64) -> Result<(String, i32), JcsError> {
    let (digits, exponent) = split_scientific(&format!("{value:e}"))?;
    // 1100 digits after the point exceed the longest exact expansion of a double (767).
    let (exact, exact_exponent) = split_scientific(&format!("{value:.1100e}"))?;
    let exact = exact.trim_end_matches('0');
    let k = digits.len();
    if exact_exponent == exponent && exact.len() == k + 1 && exact.ends_with('5') {
        let low = &exact[..k];
        let even = if low.as_bytes()[k - 1] % 2 == 0 {
            Some(low.to_owned())
        } else {
            increment(low)
        };
        if let Some(even) = even
            && even != digits
            && format!("{}.{}e{exponent}", &even[..1], &even[1..]).parse::<f64>() == Ok(value)
        {
            return Ok((even, exponent));
        }
    }
    Ok((digits, exponent))
}

fn split_scientific(text: &str) -> Result<(String, i32), JcsError> {
    let (mantissa, exponent) = text.split_once('e').ok_or(JcsError::NonFinite)?;
    let exponent: i32 = exponent.parse().map_err(|_| JcsError::NonFinite)?;
    Ok((mantissa.chars().filter(|c| *c != '.').collect(), exponent))
}

/// Adds one to a string of decimal digits; `None` if that would add a digit.
fn increment(digits: &str) -> Option<String> {
    let mut bytes = digits.as_bytes().to_vec();
    for byte in bytes.iter_mut().rev() {
        if *byte == b'9' {
            *byte = b'0';
        } else {
            *byte += 1;
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jcs(json: &str) -> String {
        String::from_utf8(canonicalize_str(json).unwrap()).unwrap()
    }

    #[test]
    fn rfc8785_section_3_2_2_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            jcs(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn rfc8785_section_3_2_3_sorting() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        assert_eq!(
            jcs(input),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    #[test]
    fn rfc8785_appendix_b_numbers() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, expected) in cases {
            assert_eq!(
                ecmascript_number(f64::from_bits(bits)).unwrap(),
                expected,
                "{bits:#x}"
            );
        }
        assert_eq!(ecmascript_number(f64::NAN), Err(JcsError::NonFinite));
        assert_eq!(ecmascript_number(f64::INFINITY), Err(JcsError::NonFinite));
    }

    #[test]
    fn control_characters_and_quotes_are_escaped() {
        let mut out = Vec::new();
        write_string(&mut out, "a\"b\\c\u{0}\u{1f}\u{7f}\u{2028}\t");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\u0000\\u001f\u{7f}\u{2028}\\t\""
        );
    }

    #[test]
    fn hex_strings_of_any_length() {
        for len in [0, 1, 31, 32, 33, 64, 65] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            let mut out = Vec::new();
            write_hex_string(&mut out, &bytes);
            assert_eq!(out, format!("\"{}\"", hex::encode(&bytes)).into_bytes());
        }
    }

    #[test]
    fn integers_and_nesting() {
        assert_eq!(
            jcs(r#"[ 0, 9007199254740991, {"b": [], "a": {}} ]"#),
            r#"[0,9007199254740991,{"a":{},"b":[]}]"#
        );
        let mut out = Vec::new();
        u64::MAX.write_canonical(&mut out);
        assert_eq!(out, u64::MAX.to_string().as_bytes());
    }
}

/// The identifier types are JSON strings.
macro_rules! canonical_as_str {
    ($($ty:ty),*) => {$(
        impl WriteCanonical for $ty {
            fn write_canonical(&self, out: &mut Vec<u8>) {
                write_string(out, self.as_str());
            }
        }
    )*};
}
canonical_as_str!(
    crate::ids::DrawId,
    crate::ids::Group,
    crate::ids::DrawTime,
    crate::child::ChildId,
    crate::child::ChildName
);

/// Codes whose alphabet needs no escaping are copied as they are.
macro_rules! canonical_ascii_code {
    ($($ty:ty),*) => {$(
        impl WriteCanonical for $ty {
            fn write_canonical(&self, out: &mut Vec<u8>) {
                out.push(b'"');
                out.extend_from_slice(self.as_bytes());
                out.push(b'"');
            }
        }
    )*};
}
canonical_ascii_code!(crate::ids::AppCode, crate::ids::KindergartenCode);

impl WriteCanonical for crate::hash::Digest {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_hex_string(out, &self.0);
    }
}

impl WriteCanonical for crate::child::Salt {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_hex_string(out, &self.0);
    }
}

impl WriteCanonical for crate::choice::Choice {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("class", &self.class)
            .field("kg", &self.kg)
            .finish();
    }
}

impl WriteCanonical for crate::choice::Choices {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        self.as_slice().write_canonical(out);
    }
}
