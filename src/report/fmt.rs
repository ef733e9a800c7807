//! Number formatting shared by the text and HTML renderers, so that both show a value the same
//! way. Pure functions of one number (or, for [`short_hash`], one hash); a non-finite value (a
//! ratio over zero) shows as `–`.

/// What a missing or non-finite value shows as.
pub(crate) const NONE: &str = "–";

/// An integer with thousands separators: `1,234,567`.
pub(crate) fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A float with thousands separators and `decimals` decimals: `12,345.6`.
pub(crate) fn num(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return NONE.to_string();
    }
    let s = format!("{:.*}", decimals, x.abs());
    let (whole, frac) = s.split_once('.').map_or((s.as_str(), None), |(w, f)| (w, Some(f)));
    let whole = whole.parse::<u64>().map(int).unwrap_or_else(|_| whole.to_string());
    let sign = if x < 0.0 && !all_zero(&s) { "-" } else { "" };
    match frac {
        Some(f) => format!("{sign}{whole}.{f}"),
        None => format!("{sign}{whole}"),
    }
}

/// A latency in milliseconds, with as many decimals as its size needs: `0.412`, `3.27`, `41.2`,
/// `1,234`.
pub(crate) fn ms(x: f64) -> String {
    let decimals = match x.abs() {
        v if v < 1.0 => 3,
        v if v < 10.0 => 2,
        v if v < 100.0 => 1,
        _ => 0,
    };
    num(x, decimals)
}

/// A measured value of unknown unit (an SLO's): two decimals from 1 up, four significant
/// digits below, trailing zeros dropped: `21.37`, `3,296.4`, `0.0053`, `3`.
pub(crate) fn measured(x: f64) -> String {
    let decimals = if x.abs() >= 1.0 || x == 0.0 {
        2
    } else {
        (3.0 - x.abs().log10().floor()).min(12.0) as usize
    };
    let s = num(x, decimals);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A rate (per second): one decimal below 100, none above.
pub(crate) fn rate(x: f64) -> String {
    num(x, if x.abs() < 100.0 { 1 } else { 0 })
}

/// A saving percentage as a reader says it: `61.5% fewer`, `12.0% more`, `same`.
pub(crate) fn saving(x: f64) -> String {
    if !x.is_finite() {
        NONE.to_string()
    } else if x.abs() < 0.05 {
        "same".to_string()
    } else if x > 0.0 {
        format!("{}% fewer", num(x, 1))
    } else {
        format!("{}% more", num(-x, 1))
    }
}

/// A small percentage (error rates): `0.021%`.
pub(crate) fn pct(x: f64) -> String {
    if !x.is_finite() {
        return NONE.to_string();
    }
    let decimals = if x.abs() < 1.0 { 3 } else { 1 };
    format!("{}%", num(x, decimals))
}

/// A value in its metric's unit (`ms`, `msg/s`, `%`, `count`, ...), without the unit: `41.2`,
/// `1,199`, `0.0053`, `3`.
pub(crate) fn in_unit(x: f64, unit: &str) -> String {
    match unit {
        "ms" => ms(x),
        "msg/s" => rate(x),
        _ => measured(x),
    }
}

/// A difference in its metric's unit with its sign: `+4.13`, `-0.2`, `0`.
pub(crate) fn signed_in_unit(x: f64, unit: &str) -> String {
    if !x.is_finite() {
        return NONE.to_string();
    }
    with_sign(x, in_unit(x.abs(), unit))
}

/// A relative change with its sign: `+12.3%`, `-0.4%`, `+350%`, `0.0%`.
pub(crate) fn signed_pct(x: f64) -> String {
    if !x.is_finite() {
        return NONE.to_string();
    }
    let magnitude = num(x.abs(), if x.abs() >= 100.0 { 0 } else { 1 });
    format!("{}%", with_sign(x, magnitude))
}

/// `magnitude` (of `x`, formatted) with the sign of `x`; none when it shows as zero.
fn with_sign(x: f64, magnitude: String) -> String {
    match x {
        _ if all_zero(&magnitude) => magnitude,
        x if x < 0.0 => format!("-{magnitude}"),
        _ => format!("+{magnitude}"),
    }
}

/// A formatted number that shows as zero (`0`, `0.00`): no digit but 0.
fn all_zero(formatted: &str) -> bool {
    !formatted.bytes().any(|b| (b'1'..=b'9').contains(&b))
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.3 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{} {}", num(v, 1), UNITS[unit])
    }
}

/// A duration in seconds: `45 s`, `2 min 5 s`, `1 h 2 min`.
pub(crate) fn secs(x: f64) -> String {
    if !x.is_finite() || x < 0.0 {
        return NONE.to_string();
    }
    let total = x.round() as u64;
    match total {
        _ if x < 10.0 => format!("{} s", num(x, 1)),
        t if t < 120 => format!("{t} s"),
        t if t < 3600 && t % 60 == 0 => format!("{} min", t / 60),
        t if t < 3600 => format!("{} min {} s", t / 60, t % 60),
        t => format!("{} h {} min", t / 3600, t % 3600 / 60),
    }
}

/// The first 12 characters of a hex hash, enough to tell profiles apart at a glance.
pub(crate) fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// An RFC 3339 UTC timestamp as `2026-11-01 14:03:12 UTC` (as given when it is not one).
pub(crate) fn when(rfc3339: &str) -> String {
    match rfc3339.split_once('T') {
        Some((date, time)) if date.len() == 10 => {
            let time = time.trim_end_matches('Z');
            let time = time.split(['.', '+']).next().unwrap_or(time);
            format!("{date} {time} UTC")
        }
        _ => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_get_thousands_separators() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(1234567), "1,234,567");
    }

    #[test]
    fn floats_keep_sign_and_decimals() {
        assert_eq!(num(12345.67, 1), "12,345.7");
        assert_eq!(num(-1234.5, 0), "-1,234");
        assert_eq!(num(-0.01, 1), "0.0");
        assert_eq!(num(f64::NAN, 1), NONE);
    }

    #[test]
    fn latencies_scale_their_decimals() {
        assert_eq!(ms(0.4123), "0.412");
        assert_eq!(ms(3.271), "3.27");
        assert_eq!(ms(41.23), "41.2");
        assert_eq!(ms(1234.4), "1,234");
    }

    #[test]
    fn measured_values_keep_their_significant_digits() {
        assert_eq!(measured(21.37), "21.37");
        assert_eq!(measured(3296.4), "3,296.4");
        assert_eq!(measured(0.0053), "0.0053");
        assert_eq!(measured(3.0), "3");
        assert_eq!(measured(0.0), "0");
    }

    #[test]
    fn savings_read_as_words() {
        assert_eq!(saving(61.54), "61.5% fewer");
        assert_eq!(saving(-12.0), "12.0% more");
        assert_eq!(saving(0.0), "same");
    }

    #[test]
    fn differences_carry_their_sign_and_unit_precision() {
        assert_eq!(in_unit(41.23, "ms"), "41.2");
        assert_eq!(in_unit(1199.4, "msg/s"), "1,199");
        assert_eq!(in_unit(0.0053, "%"), "0.0053");
        assert_eq!(signed_in_unit(-0.41, "ms"), "-0.410");
        assert_eq!(signed_in_unit(6.5, "ms"), "+6.50");
        assert_eq!(signed_in_unit(0.0, "count"), "0");
        assert_eq!(signed_pct(12.34), "+12.3%");
        assert_eq!(signed_pct(-0.04), "0.0%");
        assert_eq!(signed_pct(-350.2), "-350%");
        assert_eq!(signed_pct(f64::NAN), NONE);
    }

    #[test]
    fn bytes_durations_and_times() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(secs(4.3), "4.3 s");
        assert_eq!(secs(60.0), "60 s");
        assert_eq!(secs(125.0), "2 min 5 s");
        assert_eq!(secs(300.0), "5 min");
        assert_eq!(when("2026-11-01T14:03:12.345Z"), "2026-11-01 14:03:12 UTC");
        assert_eq!(when("yesterday"), "yesterday");
    }
}
