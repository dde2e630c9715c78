//! Local times and wording shared by the HTML report, its summary and its plots.

use super::Zone;
use rusqlite::Connection;

pub(super) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The clinic's offset from UTC at `ms`, seconds: the system's local time zone (the `TZ`
/// environment variable of the daemon, else `/etc/localtime`), as SQLite's `localtime` sees it.
pub fn local_offset_s(conn: &Connection, ms: i64) -> i64 {
    conn.query_row(
        "SELECT CAST(ROUND((julianday(?1 / 1000, 'unixepoch', 'localtime') \
         - julianday(?1 / 1000, 'unixepoch')) * 86400) AS INTEGER)",
        [ms],
        |r| r.get::<_, i64>(0),
    )
    .unwrap_or(0)
}

/// `+01:00` for 3600.
pub(super) fn offset_text(off_s: i64) -> String {
    let sign = if off_s < 0 { '-' } else { '+' };
    let m = off_s.abs() / 60;
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// Local civil time of `ms`: (y, mo, d, h, mi, s).
pub(super) fn civil(ms: i64, off_s: i64) -> (i64, i64, i64, i64, i64, i64) {
    let secs = ms.div_euclid(1000) + off_s;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil (public domain).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod / 3600, sod % 3600 / 60, sod % 60)
}

/// `14:05` (or `14:05:30` with seconds) in local time.
pub(super) fn hm(ms: i64, z: &Zone, seconds: bool) -> String {
    let (_, _, _, h, mi, se) = civil(ms, z.offset_s(ms));
    if seconds {
        format!("{h:02}:{mi:02}:{se:02}")
    } else {
        format!("{h:02}:{mi:02}")
    }
}

/// `2026-12-01 14:05:30` in local time.
pub(super) fn local_datetime(ms: i64, z: &Zone) -> String {
    let (y, mo, d, ..) = civil(ms, z.offset_s(ms));
    format!("{y:04}-{mo:02}-{d:02} {}", hm(ms, z, true))
}

/// A condition's name for people: `SpO2 low`, `Systolic BP rise from baseline`,
/// `Device disconnected`.
pub fn condition_name(c: &str) -> String {
    const METRICS: [(&str, &str); 7] = [
        ("spo2", "SpO2"),
        ("pulse_rate", "Pulse rate"),
        ("perfusion_index", "Perfusion index"),
        ("nibp_sys", "Systolic BP"),
        ("nibp_dia", "Diastolic BP"),
        ("nibp_mean", "Mean BP"),
        ("resp_rate", "Respiratory rate"),
    ];
    for (id, name) in METRICS {
        if let Some(rest) = c.strip_prefix(id).and_then(|r| r.strip_prefix('_')) {
            let what = match rest {
                "low" => "low",
                "high" => "high",
                "rise" => "rise from baseline",
                "fall" => "fall from baseline",
                other => other,
            };
            return format!("{name} {what}");
        }
    }
    match c {
        "device_disconnected" => "Device disconnected".into(),
        "no_data" => "No data from device".into(),
        "nibp_overdue" => "NIBP measurement overdue".into(),
        "no_finger" => "Finger out of the sensor".into(),
        "no_dashboard" => "No dashboard able to sound".into(),
        "store_unwritable" => "Record cannot be written".into(),
        other => {
            let t = other.replace('_', " ");
            let mut ch = t.chars();
            ch.next()
                .map(|f| f.to_uppercase().chain(ch).collect())
                .unwrap_or_default()
        }
    }
}

pub(super) fn unit_of(condition: &str) -> &'static str {
    if condition.starts_with("spo2") || condition.starts_with("perfusion") {
        " %"
    } else if condition.starts_with("pulse_rate") {
        " /min"
    } else if condition.starts_with("nibp") {
        " mmHg"
    } else {
        ""
    }
}

/// A number as people write it: `72`, `72.5`, `0.75` (at most two decimals, no trailing zeros).
pub(super) fn num(v: f64) -> String {
    let t = format!("{v:.2}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" { "0".into() } else { t.to_owned() }
}
