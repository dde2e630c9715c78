//! The SVG trend plots of the HTML report: axes with round ticks at local times, min/max
//! envelopes or joined points, labelled markers.

use super::Zone;
use super::text::{esc, hm};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Time ticks every 10 s .. 4 h, at round local times, at most 8 over the span; the labels
/// never repeat (seconds are shown when the step is under a minute).
pub(super) fn time_ticks(t0: i64, t1: i64, z: &Zone) -> (Vec<i64>, bool) {
    const STEPS_S: [i64; 12] = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14_400];
    let span_s = ((t1 - t0) / 1000).max(1);
    let step = STEPS_S
        .iter()
        .copied()
        .find(|s| span_s / s <= 8)
        .unwrap_or(14_400);
    let step_ms = step * 1000;
    let off_ms = z.offset_s(t0) * 1000;
    let first = (t0 + off_ms).div_euclid(step_ms) * step_ms - off_ms;
    let first = if first < t0 { first + step_ms } else { first };
    let ticks = (0..)
        .map(|i| first + i * step_ms)
        .take_while(|t| *t <= t1)
        .collect();
    (ticks, step < 60)
}

/// Round y ticks over `[lo, hi]` with a step of 1, 2, 5 or 10 times a power of ten, 4 to 8 of them.
pub(super) fn value_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let raw = ((hi - lo) / 7.0).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
    let n = ((hi - lo) / step).round() as i64;
    (lo, hi, (0..=n).map(|i| lo + step * i as f64).collect())
}

/// The range a plot shows: the default, extended in round steps to hold every value.
pub(super) fn plot_range(
    default: (f64, f64),
    series: &[Series<'_>],
    max: Option<f64>,
) -> (f64, f64) {
    let (mut lo, mut hi) = default;
    for se in series {
        for (_, v) in &se.points {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    if let Some(m) = max {
        hi = hi.min(m);
    }
    (lo, hi)
}

/// How a series is drawn.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Style {
    /// Continuous (oximeter): per pixel column the min..max as a band and the mean as a line,
    /// so a dip shorter than a column stays visible.
    Envelope,
    /// Intermittent measurements (NIBP): each one a marker, joined by a thin line.
    Points,
}

pub(super) struct Series<'a> {
    pub(super) name: &'a str,
    pub(super) color: &'a str,
    pub(super) style: Style,
    pub(super) points: Vec<(i64, f64)>,
}

pub(super) struct Marker {
    pub(super) t: i64,
    pub(super) color: &'static str,
    /// Shown on the plot (short).
    pub(super) tag: String,
    /// The tooltip (long).
    pub(super) label: String,
    /// The label's row above the plot: 0 doses, 1 phases, 2 alarms.
    pub(super) row: f64,
}

pub(super) const W: f64 = 960.0;
pub(super) const H: f64 = 210.0;
pub(super) const PAD_L: f64 = 44.0;
pub(super) const PAD_R: f64 = 24.0;
/// Room above the plot for three rows of marker labels: doses, phases, alarms.
pub(super) const PAD_T: f64 = 36.0;
pub(super) const PAD_B: f64 = 22.0;

pub(super) struct Axes<'a> {
    pub(super) t0: i64,
    pub(super) t1: i64,
    pub(super) zone: &'a Zone,
}

pub(super) fn plot(
    title: &str,
    ax: &Axes<'_>,
    range: (f64, f64),
    series: &[Series<'_>],
    markers: &[Marker],
) -> String {
    let (t0, t1) = (ax.t0, ax.t1);
    let (lo, hi, yticks) = value_ticks(range.0, range.1);
    let span = (t1 - t0).max(1) as f64;
    let pw = W - PAD_L - PAD_R;
    let ph = H - PAD_T - PAD_B;
    let x = |t: i64| PAD_L + (t - t0) as f64 / span * pw;
    let y = |v: f64| PAD_T + (1.0 - ((v - lo) / (hi - lo)).clamp(0.0, 1.0)) * ph;
    let mut s = String::new();
    let _ = write!(s, r#"<figure><figcaption>{}"#, esc(title));
    for se in series {
        let _ = write!(
            s,
            r#" <span class="key"><svg width="22" height="10" aria-hidden="true">{}</svg>{}</span>"#,
            match se.style {
                Style::Envelope => format!(
                    r#"<rect x="0" y="1" width="22" height="8" fill="{c}" fill-opacity="0.25"/><line x1="0" x2="22" y1="5" y2="5" stroke="{c}" stroke-width="2"/>"#,
                    c = se.color
                ),
                Style::Points => format!(
                    r#"<line x1="0" x2="22" y1="5" y2="5" stroke="{c}" stroke-width="1"/><circle cx="11" cy="5" r="3.5" fill="{c}"/>"#,
                    c = se.color
                ),
            },
            esc(se.name)
        );
    }
    let _ = write!(
        s,
        r#"</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{}">"#,
        esc(title)
    );
    for v in &yticks {
        let yy = y(*v);
        let _ = write!(
            s,
            r##"<line x1="{PAD_L}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text class="ytick" x="{}" y="{:.1}" font-size="10" text-anchor="end">{v}</text>"##,
            W - PAD_R,
            PAD_L - 4.0,
            yy + 3.0
        );
    }
    let (ticks, seconds) = time_ticks(t0, t1, ax.zone);
    for t in ticks {
        let xx = x(t);
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{PAD_T}" y2="{}" stroke="#f0f0f0"/><text class="xtick" x="{xx:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
            PAD_T + ph,
            H - 6.0,
            hm(t, ax.zone, seconds)
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    for m in markers.iter().filter(|m| m.t >= t0 && m.t <= t1) {
        let xx = x(m.t);
        let _ = write!(
            s,
            r#"<g class="marker"><title>{}</title><line x1="{xx:.1}" x2="{xx:.1}" y1="{}" y2="{}" stroke="{}" stroke-dasharray="3 2"/><text x="{:.1}" y="{}" font-size="9" fill="{}">{}</text></g>"#,
            esc(&m.label),
            m.row * 10.0 + 2.0,
            PAD_T + ph,
            m.color,
            xx + 2.0,
            m.row * 10.0 + 10.0,
            m.color,
            esc(&m.tag)
        );
    }
    for se in series {
        match se.style {
            Style::Envelope => {
                // Per pixel column: min, max, sum, n.
                let mut cols: BTreeMap<i64, (f64, f64, f64, u32)> = BTreeMap::new();
                for (t, v) in &se.points {
                    let e = cols.entry(x(*t) as i64).or_insert((
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                        0.0,
                        0,
                    ));
                    e.0 = e.0.min(*v);
                    e.1 = e.1.max(*v);
                    e.2 += v;
                    e.3 += 1;
                }
                let mut band = String::new();
                let mut line = String::new();
                let mut prev: Option<i64> = None;
                for (c, (mn, mx, sum, n)) in &cols {
                    // A gap longer than 2 minutes breaks the line: nothing is drawn across it.
                    let jump = prev.is_none_or(|p| (*c - p) as f64 > 120_000.0 / span * pw);
                    let _ = write!(
                        line,
                        "{}{c},{:.1} ",
                        if jump { "M" } else { "L" },
                        y(sum / f64::from(*n))
                    );
                    let _ = write!(band, "M{c},{:.1}V{:.1} ", y(*mn), y(*mx) + 0.01);
                    prev = Some(*c);
                }
                let _ = write!(
                    s,
                    r#"<path class="band" d="{}" stroke="{}" stroke-opacity="0.45" stroke-width="1.2" fill="none"/><path class="line" d="{}" fill="none" stroke="{}" stroke-width="1.5"><title>{}</title></path>"#,
                    band.trim_end(),
                    se.color,
                    line.trim_end(),
                    se.color,
                    esc(se.name)
                );
            }
            Style::Points => {
                let mut d = String::new();
                for (i, (t, v)) in se.points.iter().enumerate() {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if i == 0 { "M" } else { "L" },
                        x(*t),
                        y(*v)
                    );
                }
                let _ = write!(
                    s,
                    r#"<path d="{}" fill="none" stroke="{}" stroke-width="0.8"/>"#,
                    d.trim_end(),
                    se.color
                );
                for (t, v) in &se.points {
                    let _ = write!(
                        s,
                        r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{} {v} at {}</title></circle>"#,
                        x(*t),
                        y(*v),
                        se.color,
                        esc(se.name),
                        hm(*t, ax.zone, false)
                    );
                }
            }
        }
    }
    s.push_str("</svg></figure>\n");
    s
}
