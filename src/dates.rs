//! Dates and times, through the `time` crate: the store keeps Unix milliseconds, the API
//! speaks RFC 3339 in UTC (and accepts Unix seconds or "how long ago": `90m`, `24h`, `7d`),
//! trace fields carry RFC 5322 dates, and DMARC reports cover periods aligned to UTC midnight.

use std::ops::Range;
use std::time::SystemTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, Time};

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc())
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The instant `ms` Unix milliseconds after the epoch, clamped to what `time` represents.
fn utc(ms: i64) -> OffsetDateTime {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(if ms < 0 {
        Date::MIN.midnight().assume_utc()
    } else {
        Date::MAX.with_time(Time::MAX).assume_utc()
    })
}

/// `2024-05-01T12:00:00.123Z`: always milliseconds, always `Z` (the API's stable form).
pub fn format_rfc3339(ms: i64) -> String {
    let form =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    utc(ms).format(form).expect("a UTC instant formats")
}

/// `Tue, 7 Jan 2025 12:34:56 +0000` (RFC 5322 §3.3), in UTC.
pub fn rfc5322_date(when: SystemTime) -> String {
    let form = format_description!(
        "[weekday repr:short], [day padding:none] [month repr:short] [year] \
         [hour]:[minute]:[second] +0000"
    );
    OffsetDateTime::from(when)
        .format(form)
        .expect("a UTC instant formats")
}

/// Parses a time given to the API, relative to `now_ms`: RFC 3339 (`Z` or `±hh:mm`, optional
/// fraction, `T` or a space between date and time), Unix seconds, or a duration ago (`30s`,
/// `15m`, `24h`, `7d`).
pub fn parse_time(text: &str, now_ms: i64) -> Option<i64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return secs.checked_mul(1000);
    }
    if let Some(ago) = parse_duration_ms(text) {
        return now_ms.checked_sub(ago);
    }
    // RFC 3339 §5.6 allows a space for readability; the `time` parser takes `T` or `t`.
    let text = match text.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &text[..10], &text[11..]),
        _ => text.to_string(),
    };
    OffsetDateTime::parse(&text, &Rfc3339).ok().map(unix_ms)
}

/// `30s`, `15m`, `24h`, `7d` in milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let unit = text.chars().last()?;
    let per = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => HOUR_MS,
        'd' => DAY_MS,
        _ => return None,
    };
    text[..text.len() - 1].parse::<i64>().ok()?.checked_mul(per)
}

/// The start of the UTC day holding `ms`.
pub fn utc_day_start(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

/// The UTC day `YYYY-MM-DD` as a millisecond range (for `report send --period`).
pub fn parse_utc_day(text: &str) -> Option<Range<i64>> {
    let date = Date::parse(text.trim(), format_description!("[year]-[month]-[day]")).ok()?;
    let start = unix_ms(date.midnight().assume_utc());
    Some(start..start + DAY_MS)
}

/// The DMARC reporting period that holds `ms`, for a requested interval of `interval_secs`
/// (the record's `ri=`, RFC 9990 §3 / RFC 7489 §6.3): periods start at UTC midnight and
/// divide the day into whole hours. The interval is taken in whole hours between one hour and
/// one day; 86400, the default, gives the UTC day. When the hours do not divide the day, the
/// last period of each day is shorter, so no period crosses midnight.
pub fn report_period(ms: i64, interval_secs: u64) -> Range<i64> {
    let hours = (interval_secs / 3600).clamp(1, 24) as i64;
    let day = utc_day_start(ms);
    let length = hours * HOUR_MS;
    let start = day + (ms - day) / length * length;
    start..(start + length).min(day + DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn round_trips_and_relative_times() {
        let ms = 1_714_564_800_123; // 2024-05-01T12:00:00.123Z
        assert_eq!(format_rfc3339(ms), "2024-05-01T12:00:00.123Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(parse_time("2024-05-01T12:00:00.123Z", 0), Some(ms));
        assert_eq!(parse_time("2024-05-01t12:00:00.123z", 0), Some(ms));
        assert_eq!(parse_time("2024-05-01 12:00:00.123Z", 0), Some(ms));
        assert_eq!(parse_time("2024-05-01T14:00:00.123+02:00", 0), Some(ms));
        assert_eq!(parse_time("2024-05-01T12:00:00.1234567Z", 0), Some(ms));
        assert_eq!(parse_time("1714564800", 0), Some(1_714_564_800_000));
        assert_eq!(parse_time("2h", 10_000_000), Some(10_000_000 - 7_200_000));
        assert_eq!(parse_time("7d", 0), Some(-7 * DAY_MS));
        assert_eq!(parse_time("1970-01-01T00:00:00Z", 5), Some(0));
        for bad in [
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "h",
            "99999999999999999999d",
            "2024-05-01 ",
        ] {
            assert_eq!(parse_time(bad, 0), None, "{bad}");
        }
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(rfc5322_date(leap), "Thu, 29 Feb 2024 12:34:56 +0000");
        let y2k = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc5322_date(y2k), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn report_periods_align_to_utc_midnight() {
        let day = parse_utc_day("2024-05-01").unwrap();
        assert_eq!(day.start, 1_714_521_600_000);
        assert_eq!(day.end - day.start, DAY_MS);
        assert_eq!(parse_utc_day("2024-02-30"), None);
        let noon = day.start + 12 * HOUR_MS + 5;
        assert_eq!(utc_day_start(noon), day.start);
        assert_eq!(utc_day_start(-1), -DAY_MS);
        // ri=86400 (the default) is the UTC day; over a day is still a day.
        assert_eq!(report_period(noon, 86_400), day.clone());
        assert_eq!(report_period(noon, 7 * 86_400), day.clone());
        // ri=3600: the hour; under an hour is still an hour.
        let hour = day.start + 12 * HOUR_MS..day.start + 13 * HOUR_MS;
        assert_eq!(report_period(noon, 3_600), hour.clone());
        assert_eq!(report_period(noon, 60), hour);
        // ri=5h: 00-05, 05-10, 10-15, 15-20, 20-24 (the last is cut at midnight).
        assert_eq!(
            report_period(noon, 5 * 3_600),
            day.start + 10 * HOUR_MS..day.start + 15 * HOUR_MS
        );
        assert_eq!(
            report_period(day.end - 1, 5 * 3_600),
            day.start + 20 * HOUR_MS..day.end
        );
    }
}
