//! Timestamps as the wire writes them: ISO-8601 in UTC with milliseconds, like `Date.toISOString()`.
//!
//! Formatting and parsing are the few lines of calendar arithmetic below rather than the `time`
//! crate: this crate is compiled into both wasm modules of the browser package, where `time`'s
//! general formatting machinery cost about 15 KB of each. The tests hold both to `time`'s
//! answers (RFC 3339, as `time`'s `Rfc3339` parses it), on the host.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ParseError;

/// An instant, held as milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Earliest and latest instants accepted: years 0001 to 9999, the range ISO strings can spell.
const MIN_MILLIS: i64 = -62_135_596_800_000;
const MAX_MILLIS: i64 = 253_402_300_799_999;
const MILLIS_PER_DAY: i64 = 86_400_000;

impl Timestamp {
    /// From milliseconds since the epoch, clamped to years 0001–9999.
    pub const fn from_millis(millis: i64) -> Self {
        let m = if millis < MIN_MILLIS {
            MIN_MILLIS
        } else if millis > MAX_MILLIS {
            MAX_MILLIS
        } else {
            millis
        };
        Self(m)
    }
    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }
    /// Whole seconds since the epoch (as JWT `exp` counts).
    pub const fn seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }
    /// This instant plus `millis` (negative to go back), clamped.
    pub const fn plus_millis(self, millis: i64) -> Self {
        Self::from_millis(self.0.saturating_add(millis))
    }
    /// The current time (on wasm32, `Date.now()`).
    pub fn now() -> Self {
        Self::from_millis(now_millis())
    }
}

#[cfg(target_arch = "wasm32")]
fn now_millis() -> i64 {
    // Whole milliseconds, far inside i64: `Date.now()` is an integer.
    #[allow(clippy::cast_possible_truncation)]
    let millis = js_sys::Date::now() as i64;
    millis
}

#[cfg(not(target_arch = "wasm32"))]
fn now_millis() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |m| -m),
    }
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar (`month` 1–12), by Howard
/// Hinnant's `days_from_civil` (eras of 400 years, years starting in March).
const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date (year, month 1–12, day) of a count of days since 1970-01-01: the inverse of
/// [`days_from_civil`].
const fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

const fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

const fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Reads RFC 3339 text byte by byte, as `time`'s `Rfc3339` does.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let (digits, rest) = self.0.split_at_checked(n)?;
        let mut value = 0;
        for &b in digits {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(b - b'0');
        }
        self.0 = rest;
        Some(value)
    }
    /// Whether the next byte is one of `bytes`; consumes it if so.
    fn eat(&mut self, bytes: &[u8]) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        bytes.contains(&first).then(|| {
            self.0 = rest;
            first
        })
    }
    /// Any one byte.
    fn skip(&mut self) -> Option<()> {
        self.0 = self.0.get(1..)?;
        Some(())
    }
}

/// Milliseconds since the epoch of an RFC 3339 date-time (`2022-12-23T05:13:47.927Z`,
/// `…+02:00`; any separator byte between date and time, any number of fraction digits, a leap
/// second only where it can fall), or `None`.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let mut r = Reader(text.as_bytes());
    let year = r.digits(4)?;
    r.eat(b"-")?;
    let month = r.digits(2)?;
    r.eat(b"-")?;
    let day = r.digits(2)?;
    r.skip()?;
    let hour = r.digits(2)?;
    r.eat(b":")?;
    let minute = r.digits(2)?;
    r.eat(b":")?;
    let mut second = r.digits(2)?;
    let mut millis = 0;
    if r.eat(b".").is_some() {
        // Milliseconds from the first three digits; the rest is finer than a Timestamp holds.
        let mut scale = 100;
        millis = r.digits(1)? * scale;
        while let Some(d) = r.digits(1) {
            scale /= 10;
            millis += d * scale;
        }
    }
    let offset_minutes = match r.eat(b"Zz+-")? {
        b'Z' | b'z' => 0,
        sign => {
            let hours = r.digits(2).filter(|h| *h <= 23)?;
            r.eat(b":")?;
            let minutes = r.digits(2).filter(|m| *m <= 59)?;
            if sign == b'-' { -(hours * 60 + minutes) } else { hours * 60 + minutes }
        }
    };
    if !r.0.is_empty()
        || !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // A leap second stands for the last millisecond before it, and may only be the last second
    // of a month in UTC.
    let leap = second == 60;
    if leap {
        second = 59;
        millis = 999;
    }
    let local = days_from_civil(year, month, day) * MILLIS_PER_DAY
        + ((hour * 60 + minute) * 60 + second) * 1000
        + millis;
    let utc = local - offset_minutes * 60_000;
    if leap {
        let next_day = (utc + 1).div_euclid(MILLIS_PER_DAY);
        let (_, _, next_day_of_month) = civil_from_days(next_day);
        if (utc + 1).rem_euclid(MILLIS_PER_DAY) != 0 || next_day_of_month != 1 {
            return None;
        }
    }
    Some(utc)
}

impl FromStr for Timestamp {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_rfc3339(s) {
            Some(millis) if (MIN_MILLIS..=MAX_MILLIS).contains(&millis) => Ok(Self(millis)),
            _ => Err(ParseError::InvalidTimestamp(s.chars().take(64).collect())),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days(self.0.div_euclid(MILLIS_PER_DAY));
        let in_day = self.0.rem_euclid(MILLIS_PER_DAY);
        let (seconds, millis) = (in_day / 1000, in_day % 1000);
        let (hour, minute, second) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
        write!(f, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
