//! Durations in Go's `time.ParseDuration` syntax, because KES config files are written in it.
//!
//! humantime's parser is not used for reading: it treats `M` as months and rejects some of Go's
//! forms, so a KES file could change meaning silently. It is used for printing, where it fits.

use std::time::Duration;

const NANOS_PER_UNIT: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // micro sign, as Go accepts
    ("\u{3bc}s", 1_000), // Greek small mu, likewise
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
];

/// Parses a Go duration such as `5m0s`, `1h30m`, `250ms` or `1.5s`. Negative durations are
/// refused, since no setting of this node can use one; `0` alone is allowed, as in Go.
pub(crate) fn parse_go_duration(text: &str) -> Result<Duration, &'static str> {
    let s = text.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let d = parse_unsigned(s)?;
    if negative && !d.is_zero() {
        return Err("negative durations are not allowed");
    }
    Ok(d)
}

fn parse_unsigned(s: &str) -> Result<Duration, &'static str> {
    if s.is_empty() {
        return Err("it is empty");
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_num) = match after_int.strip_prefix('.') {
            Some(f) => {
                let n = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                f.split_at(n)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err("expected a number");
        }
        let unit_len = after_num
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_num.len());
        let (unit, next) = after_num.split_at(unit_len);
        if unit.is_empty() {
            return Err("a number is missing its unit (ns, us, ms, s, m or h)");
        }
        let per_unit = NANOS_PER_UNIT
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, n)| *n)
            .ok_or("unknown unit; use ns, us, ms, s, m or h")?;
        total = total
            .checked_add(component_nanos(int_part, frac_part, per_unit)?)
            .ok_or("it is too large")?;
        rest = next;
    }
    let nanos = u64::try_from(total).map_err(|_| "it is too large")?;
    Ok(Duration::from_nanos(nanos))
}

/// `int.frac` × unit in nanoseconds, truncating below one nanosecond as Go does.
fn component_nanos(int_part: &str, frac_part: &str, per_unit: u128) -> Result<u128, &'static str> {
    const TOO_LARGE: &str = "it is too large";
    let mut nanos: u128 = 0;
    if !int_part.is_empty() {
        let int: u128 = int_part.parse().map_err(|_| TOO_LARGE)?;
        nanos = int.checked_mul(per_unit).ok_or(TOO_LARGE)?;
    }
    // Digits past nanosecond precision cannot change the result, and capping them keeps the
    // power of ten in range.
    let mut scale: u128 = 1;
    let mut frac: u128 = 0;
    for digit in frac_part.bytes().take(30) {
        frac = frac * 10 + u128::from(digit - b'0');
        scale *= 10;
    }
    nanos.checked_add(frac * per_unit / scale).ok_or(TOO_LARGE)
}

/// Prints a duration the way humans (and Go) write it, e.g. `5m` or `1h 30m`.
pub(crate) fn show(d: Duration) -> String {
    if d.is_zero() {
        "0s".to_owned()
    } else {
        humantime::format_duration(d).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        match parse_go_duration(s) {
            Ok(d) => d,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn go_forms_parse() {
        assert_eq!(ok("5m0s"), Duration::from_secs(300));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("2h45m30.5s"), Duration::from_millis(9_930_500));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10\u{b5}s"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("+15s"), Duration::from_secs(15));
        assert_eq!(ok(" 15s "), Duration::from_secs(15));
    }

    #[test]
    fn bad_forms_are_refused() {
        for bad in [
            "", "5", "s", ".s", "5 m", "5M", "1d", "soon", "-5s", "5m-3s", "1h 30m", "1e3s",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_go_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn negative_zero_is_zero() {
        assert_eq!(ok("-0s"), Duration::ZERO);
    }

    #[test]
    fn shows_like_humans_write() {
        assert_eq!(show(Duration::from_secs(300)), "5m");
        assert_eq!(show(Duration::ZERO), "0s");
        assert_eq!(show(Duration::from_millis(250)), "250ms");
    }
}
