//! PostgreSQL's binary `numeric` format, to and from decimal text (every digit kept):
//! `ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: [i16; ndigits]` in base 10,000,
//! where the first digit is worth `10000^weight`.

/// What a decimal argument looks like (JSON Schema `pattern`).
pub const PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$";

const POSITIVE: u16 = 0x0000;
const NEGATIVE: u16 = 0x4000;
const NAN: u16 = 0xC000;
/// Most significant digits accepted in an argument.
const MAX_DIGITS: usize = 1000;

/// Parses decimal text (`-12.50`, `1e3`, `2.5E-2`) into (negative, integer digits, fraction
/// digits), exponent applied.
fn parse(text: &str) -> Option<(bool, String, String)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if mantissa.contains('.') && frac.is_empty() {
        return None;
    }
    if int.len() + frac.len() > MAX_DIGITS || exponent.unsigned_abs() as usize > MAX_DIGITS {
        return None;
    }
    let mut digits = format!("{int}{frac}");
    let mut point = int.len() as i64 + i64::from(exponent);
    if point < 0 {
        digits = "0".repeat(point.unsigned_abs() as usize) + &digits;
        point = 0;
    }
    let point = point as usize;
    if point > digits.len() {
        digits.push_str(&"0".repeat(point - digits.len()));
    }
    let (i, f) = digits.split_at(point);
    let i = i.trim_start_matches('0');
    Some((
        negative,
        if i.is_empty() { "0".into() } else { i.into() },
        f.into(),
    ))
}

/// Encodes decimal text; `None` when it is not a decimal number.
pub fn encode(text: &str) -> Option<Vec<u8>> {
    let (negative, int, frac) = parse(text)?;
    let dscale = u16::try_from(frac.len()).ok()?;
    // Integer part, grouped by four from the decimal point leftwards.
    let int_padded = format!("{}{int}", "0".repeat((4 - int.len() % 4) % 4));
    let mut groups: Vec<i16> = int_padded
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).ok().and_then(|s| s.parse().ok()))
        .collect::<Option<_>>()?;
    let mut weight = groups.len() as i32 - 1;
    let frac_padded = format!("{frac}{}", "0".repeat((4 - frac.len() % 4) % 4));
    for chunk in frac_padded.as_bytes().chunks(4) {
        groups.push(std::str::from_utf8(chunk).ok()?.parse().ok()?);
    }
    // Strip leading zero groups (moving the weight) and trailing ones.
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let (weight, sign) = if groups.is_empty() {
        (0, POSITIVE)
    } else {
        (weight, if negative { NEGATIVE } else { POSITIVE })
    };
    let mut out = Vec::with_capacity(8 + groups.len() * 2);
    out.extend_from_slice(&i16::try_from(groups.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&i16::try_from(weight).ok()?.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(out)
}

/// Decodes the binary format into decimal text with exactly `dscale` fraction digits (`NaN` as
/// `"NaN"`, infinities as `"Infinity"`/`"-Infinity"`).
pub fn decode(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<[u8; 2]> { bytes.get(i..i + 2)?.try_into().ok() };
    let ndigits = i16::from_be_bytes(word(0)?);
    let weight = i16::from_be_bytes(word(2)?) as i32;
    let sign = u16::from_be_bytes(word(4)?);
    let dscale = u16::from_be_bytes(word(6)?) as usize;
    match sign {
        NAN => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        POSITIVE | NEGATIVE => {}
        _ => return None,
    }
    let ndigits = usize::try_from(ndigits).ok()?;
    let digits: Vec<i16> = (0..ndigits)
        .map(|k| word(8 + 2 * k).map(i16::from_be_bytes))
        .collect::<Option<_>>()?;
    let digit_at = |pos: i32| -> i16 {
        // The digit worth 10000^(weight - index).
        let index = weight - pos;
        usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut int = String::new();
    if weight >= 0 {
        for pos in (0..=weight).rev() {
            let d = digit_at(pos);
            if int.is_empty() {
                if d != 0 {
                    int = d.to_string();
                }
            } else {
                int.push_str(&format!("{d:04}"));
            }
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut pos = -1;
    while frac.len() < dscale {
        frac.push_str(&format!("{:04}", digit_at(pos)));
        pos -= 1;
    }
    frac.truncate(dscale);
    let negative = sign == NEGATIVE && (int != "0" || frac.bytes().any(|b| b != b'0'));
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    out.push_str(&int);
    if dscale > 0 {
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_keep_every_digit() {
        for (input, expected) in [
            ("0", "0"),
            ("12.50", "12.50"),
            ("-12.50", "-12.50"),
            ("10000", "10000"),
            ("123456789.000000001", "123456789.000000001"),
            ("0.0001", "0.0001"),
            ("-0.00005", "-0.00005"),
            (
                "99999999999999999999999999999.99",
                "99999999999999999999999999999.99",
            ),
            ("1e3", "1000"),
            ("2.5E-2", "0.025"),
            ("007", "7"),
        ] {
            let bytes = encode(input).unwrap_or_else(|| panic!("{input}"));
            assert_eq!(decode(&bytes).as_deref(), Some(expected), "{input}");
        }
        for bad in ["", "-", "1.", ".5", "1.2.3", "abc", "1e", "١٢", "1 2", "0x10"] {
            assert!(encode(bad).is_none(), "{bad:?}");
        }
        assert!(encode(&"9".repeat(2000)).is_none());
        assert!(encode("1e100000").is_none());
    }
}
