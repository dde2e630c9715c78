//! Time as the pipeline sees it. The alarm engine never reads a clock: it is handed a [`Mono`].
//! Everything else reads time through here so that receive stamps are taken one way.

use crate::model::DeviceTime;
pub use crate::model::{MONO_ORIGIN, Mono};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The monotonic time now.
pub fn mono_now() -> Mono {
    Mono(u64::try_from((epoch().elapsed() + MONO_ORIGIN).as_nanos()).unwrap_or(u64::MAX))
}

/// The wall-clock time now, in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Formats Unix milliseconds as RFC 3339 UTC (`2026-11-22T04:00:00.123Z`), without a date crate.
pub fn rfc3339_ms(ms: i64) -> String {
    let mut buf = [0u8; RFC3339_MAX];
    let n = write_rfc3339_ms(ms, &mut buf);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Room for any [`write_rfc3339_ms`] output (years beyond 9999 included).
pub const RFC3339_MAX: usize = 40;

/// [`rfc3339_ms`] into a caller's buffer, without allocating; returns the length written.
///
/// Years 0..=9999 (every time a clock or device gives) are written digit by digit: through
/// `core::fmt` this was 1.5 % of the daemon's CPU at 25 000 lines/s (a reading's `received`
/// time is written for every reading sent). Other years go through `write!`, as before.
pub fn write_rfc3339_ms(ms: i64, buf: &mut [u8; RFC3339_MAX]) -> usize {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, (sod / 60) % 60, sod % 60);
    if (0..=9999).contains(&y) {
        // Every field is in range here: y < 10^4, m <= 12, d <= 31, hh < 24, mm/ss < 60,
        // milli < 1000 (all non-negative: rem_euclid and civil_from_days give them so).
        fn digits(out: &mut [u8], mut v: i64) {
            for b in out.iter_mut().rev() {
                *b = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        let out = &mut buf[..24];
        digits(&mut out[0..4], y);
        out[4] = b'-';
        digits(&mut out[5..7], i64::from(m));
        out[7] = b'-';
        digits(&mut out[8..10], i64::from(d));
        out[10] = b'T';
        digits(&mut out[11..13], hh);
        out[13] = b':';
        digits(&mut out[14..16], mm);
        out[16] = b':';
        digits(&mut out[17..19], ss);
        out[19] = b'.';
        digits(&mut out[20..23], milli);
        out[23] = b'Z';
        return 24;
    }
    use std::io::Write;
    let mut w = &mut buf[..];
    let room = w.len();
    // Cannot fail: the buffer holds the longest i64-derived date.
    let _ = write!(
        w,
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{milli:03}Z"
    );
    room - w.len()
}

/// The calendar time (UTC) of Unix milliseconds, as a device would stamp it.
pub fn calendar_utc(ms: i64) -> DeviceTime {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    DeviceTime {
        year: u16::try_from(y).unwrap_or(0),
        month: m as u8,
        day: d as u8,
        hour: (sod / 3600) as u8,
        minute: ((sod / 60) % 60) as u8,
        second: (sod % 60) as u8,
    }
}

/// Howard Hinnant's days-to-civil algorithm (public domain).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29T12:34:56.789Z, a leap day.
        assert_eq!(rfc3339_ms(951_827_696_789), "2000-02-29T12:34:56.789Z");
    }

    /// The digit-by-digit path writes what `write!` writes, across day, month, year, leap-year
    /// and century boundaries, before 1970 and at the ends of the fast path (years 0 and 9999);
    /// years outside it (negative, five digits) still format through `write!`.
    #[test]
    fn rfc3339_fast_path_matches_the_formatted_text() {
        fn formatted(ms: i64) -> String {
            let secs = ms.div_euclid(1000);
            let sod = secs.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                sod / 3600,
                (sod / 60) % 60,
                sod % 60,
                ms.rem_euclid(1000)
            )
        }
        const DAY: i64 = 86_400_000;
        // 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
        let year0 = -62_167_219_200_000;
        let year9999_end = 253_402_300_799_999;
        let mut instants = vec![
            0,
            -1,
            951_827_696_789,
            year0,
            year9999_end,
            year0 - 1,
            year9999_end + 1,
            i64::MIN / 2,
            i64::MAX / 2,
        ];
        // Every day of 1999-2001 (a leap century year) and 2099-2101 (not leap), at a moment
        // that varies each field.
        for start in [915_148_800_000i64, 4_070_908_800_000] {
            for day in 0..(3 * 366) {
                instants.push(start + day * DAY + (day * 37_123_457) % DAY);
            }
        }
        for ms in instants {
            let mut buf = [0u8; RFC3339_MAX];
            let n = write_rfc3339_ms(ms, &mut buf);
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                formatted(ms),
                "at {ms} ms"
            );
        }
        assert_eq!(rfc3339_ms(year0), "0000-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(year9999_end), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(year9999_end + 1), "10000-01-01T00:00:00.000Z");
    }

    #[test]
    fn mono_arithmetic_saturates() {
        assert_eq!(Mono(5).since(Mono(9)), Duration::ZERO);
        assert_eq!(
            Mono(u64::MAX).saturating_add(Duration::from_secs(1)),
            Mono(u64::MAX)
        );
    }
}
