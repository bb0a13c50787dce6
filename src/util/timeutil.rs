//! Time parsing and formatting: datetimes entered in the configured zone, kept as UTC, and
//! time ranges written as presets (`last 1h`) or absolute bounds (`START .. END`).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// A resolved half-open window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Relative presets offered by the time range widget.
pub const PRESETS: &[&str] = &["last 15m", "last 1h", "last 6h", "last 24h", "last 7d", "last 30d"];

/// Parses a duration such as `15m`, `1h`, `24h`, `7d`, `2w`, `30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().map_err(|_| format!("`{s}` is not a duration such as 15m, 1h, 24h or 7d"))?;
    if n <= 0 || n > 100_000 {
        return Err(format!("`{s}`: the number must be between 1 and 100000"));
    }
    match unit.trim() {
        "s" => Ok(Duration::seconds(n)),
        "m" | "min" => Ok(Duration::minutes(n)),
        "h" => Ok(Duration::hours(n)),
        "d" => Ok(Duration::days(n)),
        "w" => Ok(Duration::weeks(n)),
        _ => Err(format!("`{s}`: unknown unit, use s, m, h, d or w (e.g. 15m, 1h, 7d)")),
    }
}

/// Parses a date and time entered in `tz` (or carrying its own offset) into UTC.
pub fn parse_datetime(s: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(dt.with_timezone(&Utc));
    }
    const FORMATS: &[&str] = &["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"];
    let naive = FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
        .ok_or_else(|| format!("`{s}` is not a date and time; write it as 2026-02-05 14:30"))?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|dt| dt.with_timezone(&Utc))
        .ok_or_else(|| format!("`{s}` does not exist in time zone {tz} (a clock change?)"))
}

/// Parses `last 1h` or `START .. END` (each end as in [`parse_datetime`]).
pub fn parse_range(s: &str, tz: Tz, now: DateTime<Utc>) -> Result<Window, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("enter a time range, e.g. last 1h".into());
    }
    if let Some(rest) = s.strip_prefix("last ") {
        let d = parse_duration(rest)?;
        return Ok(Window { start: now - d, end: now });
    }
    let Some((a, b)) = s.split_once("..") else {
        return Err(format!("`{s}` is not a time range; use a preset such as `last 24h` or `START .. END`"));
    };
    let start = parse_datetime(a, tz)?;
    let end = parse_datetime(b, tz)?;
    if start >= end {
        return Err("the start of the time range must be before its end".into());
    }
    Ok(Window { start, end })
}

/// Formats a UTC instant in `tz` as the form widgets show it (`2026-02-05T14:30`).
pub fn format_input(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%dT%H:%M").to_string()
}

/// Formats a UTC instant in `tz` for tables.
pub fn format_display(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 2, 5, 15, 0, 0).single().unwrap_or_default()
    }

    #[test]
    fn presets_resolve_against_now() {
        let w = parse_range("last 1h", Tz::UTC, now()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.end - w.start, Duration::hours(1));
        assert_eq!(w.end, now());
        assert!(parse_range("last 7d", Tz::UTC, now()).is_ok());
        assert!(parse_range("last 0h", Tz::UTC, now()).is_err());
        assert!(parse_range("last 3 parsecs", Tz::UTC, now()).is_err());
    }

    #[test]
    fn absolute_ranges_are_entered_in_the_zone_and_kept_in_utc() {
        let w = parse_range("2026-02-05 14:00 .. 2026-02-05T15:30", chrono_tz::Europe::Prague, now())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.start, Utc.with_ymd_and_hms(2026, 2, 5, 13, 0, 0).single().unwrap_or_default());
        assert_eq!(format_input(w.end, chrono_tz::Europe::Prague), "2026-02-05T15:30");
    }

    #[test]
    fn impossible_windows_are_refused() {
        let e = parse_range("2026-02-05 15:00 .. 2026-02-05 14:00", Tz::UTC, now()).unwrap_err();
        assert!(e.contains("before its end"), "{e}");
        assert!(parse_range("2026-02-30 10:00 .. 2026-03-01", Tz::UTC, now()).is_err());
        assert!(parse_range("yesterday-ish", Tz::UTC, now()).is_err());
    }
}
