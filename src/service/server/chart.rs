//! One dyno's memory chart as inline SVG: a time axis and an MB axis with
//! labels, the min–max band and the average of each bucket, the quota and
//! the restart threshold as distinct lines, and a marker per restart,
//! failed restart, R14, R15, recovery and instance change (each with a
//! `<title>`, shown on hover). Pure: data in, markup out.

use std::fmt::Write as _;

use jiff::Timestamp;

use crate::store::HistoryPoint;

/// What a marker stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    Restart,
    RestartFailed,
    R14,
    R15,
    Recovered,
    Instance,
}

impl MarkKind {
    pub fn class(self) -> &'static str {
        match self {
            Self::Restart => "mk-restart",
            Self::RestartFailed => "mk-restart-failed",
            Self::R14 => "mk-r14",
            Self::R15 => "mk-r15",
            Self::Recovered => "mk-recovered",
            Self::Instance => "mk-instance",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Mark {
    /// Unix ms.
    pub at: i64,
    pub kind: MarkKind,
    /// Shown on hover.
    pub title: String,
}

pub struct Chart<'a> {
    /// The x axis, unix ms.
    pub from: i64,
    pub to: i64,
    /// Width of a bucket (ms): points further apart than two leave a gap.
    pub bucket: i64,
    pub points: &'a [HistoryPoint],
    pub quota: Option<f64>,
    pub threshold: Option<f64>,
    pub marks: &'a [Mark],
    /// Accessible name (`web.1 memory, last 6 h`).
    pub label: &'a str,
}

const W: f64 = 360.0;
const H: f64 = 150.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 354.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 126.0;

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The smallest "nice" MB step that gives at most four gridlines.
fn mb_step(max: f64) -> f64 {
    const STEPS: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
        8192.0, 16384.0,
    ];
    STEPS
        .into_iter()
        .find(|s| max / s <= 4.0)
        .unwrap_or(max / 4.0)
}

/// A time step (ms) giving at most six labels.
fn time_step(span: i64) -> i64 {
    const MIN: i64 = 60_000;
    const STEPS: [i64; 12] = [
        MIN,
        5 * MIN,
        10 * MIN,
        15 * MIN,
        30 * MIN,
        60 * MIN,
        120 * MIN,
        180 * MIN,
        360 * MIN,
        720 * MIN,
        1440 * MIN,
        2880 * MIN,
    ];
    STEPS
        .into_iter()
        .find(|s| span / s <= 6)
        .unwrap_or(2880 * MIN)
}

fn time_label(ms: i64, step: i64) -> String {
    let t = Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
    if step >= 86_400_000 {
        t.strftime("%b %d").to_string()
    } else {
        t.strftime("%H:%M").to_string()
    }
}

pub fn mb(v: f64) -> String {
    format!("{v:.0} MB")
}

pub fn svg(c: &Chart) -> String {
    let span = (c.to - c.from).max(60_000);
    let top_value = c
        .points
        .iter()
        .map(|p| p.max)
        .chain(c.quota)
        .chain(c.threshold)
        .fold(1.0_f64, f64::max)
        * 1.08;
    let step = mb_step(top_value);
    let ymax = (top_value / step).ceil() * step;
    let x = |t: i64| LEFT + (t - c.from) as f64 / span as f64 * (RIGHT - LEFT);
    let y = |v: f64| BOTTOM - (v / ymax).clamp(0.0, 1.05) * (BOTTOM - TOP);

    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\" data-from=\"{}\" data-to=\"{}\">",
        esc(c.label),
        c.from,
        c.to
    );
    s.push_str("<rect class=\"plot\" x=\"40\" y=\"12\" width=\"314\" height=\"114\"/>");
    // MB axis: gridlines and labels.
    s.push_str("<g class=\"axis y\">");
    let mut v = 0.0;
    while v <= ymax + 0.001 {
        let yy = y(v);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/><text x=\"36\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>",
            yy + 3.5
        );
        v += step;
    }
    s.push_str("<text x=\"2\" y=\"8\" class=\"unit\">MB</text></g>");
    // Time axis.
    let tstep = time_step(span);
    s.push_str("<g class=\"axis x\">");
    let mut t = (c.from + tstep - 1).div_euclid(tstep) * tstep;
    while t <= c.to {
        let xx = x(t);
        let _ = write!(
            s,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{TOP}\" y2=\"{:.1}\"/><text x=\"{xx:.1}\" y=\"140\" text-anchor=\"middle\">{}</text>",
            BOTTOM + 3.0,
            time_label(t, tstep)
        );
        t += tstep;
    }
    s.push_str("<text x=\"354\" y=\"149\" text-anchor=\"end\" class=\"unit\">UTC</text></g>");

    // Runs of points without gaps: the band and the average line.
    let mut runs: Vec<&[HistoryPoint]> = Vec::new();
    let mut start = 0;
    for i in 1..=c.points.len() {
        if i == c.points.len() || c.points[i].t - c.points[i - 1].t > 2 * c.bucket.max(60_000) {
            runs.push(&c.points[start..i]);
            start = i;
        }
    }
    let half = c.bucket as f64 / 2.0;
    let mid = |p: &HistoryPoint| x(p.t + half as i64);
    let mut band = String::new();
    let mut avg = String::new();
    for run in runs.iter().filter(|r| !r.is_empty()) {
        if run.len() == 1 {
            let p = &run[0];
            let _ = write!(avg, "M{:.1},{:.1}h1.5", mid(p) - 0.75, y(p.avg));
        }
        for (i, p) in run.iter().enumerate() {
            let _ = write!(
                band,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                mid(p),
                y(p.max)
            );
            if run.len() > 1 {
                let _ = write!(
                    avg,
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { "L" },
                    mid(p),
                    y(p.avg)
                );
            }
        }
        for p in run.iter().rev() {
            let _ = write!(band, "L{:.1},{:.1}", mid(p), y(p.min));
        }
        band.push('Z');
    }
    if !band.is_empty() {
        let _ = write!(
            s,
            "<path class=\"band\" d=\"{band}\"/><path class=\"avg\" d=\"{avg}\"/>"
        );
    }
    if let Some(q) = c.quota {
        let yy = y(q);
        let _ = write!(
            s,
            "<g class=\"quota\"><title>quota {}</title><line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">quota</text></g>",
            mb(q),
            RIGHT - 2.0,
            yy - 2.5
        );
    }
    if let Some(l) = c.threshold {
        let yy = y(l);
        let _ = write!(
            s,
            "<g class=\"threshold\"><title>restart threshold {}</title><line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"start\">restart at {}</text></g>",
            mb(l),
            LEFT + 3.0,
            yy + 9.5,
            mb(l)
        );
    }
    for m in c.marks.iter().filter(|m| m.at >= c.from && m.at <= c.to) {
        let xx = x(m.at);
        let _ = write!(
            s,
            "<g class=\"mk {}\"><title>{}</title>",
            m.kind.class(),
            esc(&m.title)
        );
        match m.kind {
            MarkKind::Restart | MarkKind::RestartFailed => {
                let _ = write!(
                    s,
                    "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{TOP}\" y2=\"{BOTTOM}\"/><path d=\"M{:.1},2h9l-4.5,8z\"/>",
                    xx - 4.5
                );
            }
            MarkKind::Instance => {
                let _ = write!(
                    s,
                    "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{TOP}\" y2=\"{BOTTOM}\"/>"
                );
            }
            MarkKind::R14 => {
                let _ = write!(
                    s,
                    "<circle cx=\"{xx:.1}\" cy=\"{:.1}\" r=\"3.5\"/>",
                    TOP + 5.0
                );
            }
            MarkKind::R15 => {
                let _ = write!(
                    s,
                    "<path d=\"M{:.1},{:.1}l8,8m0,-8l-8,8\"/>",
                    xx - 4.0,
                    TOP + 1.0
                );
            }
            MarkKind::Recovered => {
                let _ = write!(
                    s,
                    "<circle cx=\"{xx:.1}\" cy=\"{:.1}\" r=\"3.5\"/>",
                    BOTTOM - 5.0
                );
            }
        }
        s.push_str("</g>");
    }
    if c.points.is_empty() {
        s.push_str("<text x=\"197\" y=\"72\" text-anchor=\"middle\" class=\"empty\">no history in this range yet</text>");
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: i64, v: f64) -> HistoryPoint {
        HistoryPoint {
            dyno: "web.1".into(),
            t,
            samples: 3,
            min: v - 10.0,
            avg: v,
            max: v + 10.0,
            rss: None,
            swap: None,
            quota: Some(512.0),
        }
    }

    #[test]
    fn a_chart_has_axes_lines_band_markers_and_gaps() {
        const MIN: i64 = 60_000;
        let base = 1_763_700_000_000 / 3_600_000 * 3_600_000; // on the hour
        let mut pts: Vec<_> = (0..30)
            .map(|i| point(base + i * MIN, 200.0 + i as f64))
            .collect();
        pts.extend((45..60).map(|i| point(base + i * MIN, 100.0)));
        let marks = [
            Mark {
                at: base + 31 * MIN,
                kind: MarkKind::Restart,
                title: "restart <threshold>".into(),
            },
            Mark {
                at: base + 28 * MIN,
                kind: MarkKind::R14,
                title: "R14".into(),
            },
            Mark {
                at: base - 5 * MIN,
                kind: MarkKind::R15,
                title: "before the axis".into(),
            },
        ];
        let svg = svg(&Chart {
            from: base,
            to: base + 60 * MIN,
            bucket: MIN,
            points: &pts,
            quota: Some(512.0),
            threshold: Some(460.8),
            marks: &marks,
            label: "web.1",
        });
        // Ten-minute time labels from the axis' start; MB labels every 256 MB up to 768.
        let first = time_label(base, 10 * MIN);
        assert!(svg.contains(&format!(">{first}</text>")), "{svg}");
        for mb in [">0<", ">256<", ">512<", ">768<"] {
            assert!(svg.contains(mb), "MB label {mb}: {svg}");
        }
        assert!(svg.contains("restart at 461 MB"), "{svg}");
        assert_eq!(svg.matches("class=\"mk mk-restart\"").count(), 1);
        assert!(
            svg.contains("<title>restart &lt;threshold&gt;</title>"),
            "escaped"
        );
        assert!(
            svg.contains("mk-r14") && !svg.contains("mk-r15"),
            "marks outside the axis are left out"
        );
        // The 15-minute gap splits the band in two.
        let band = svg.split("class=\"band\" d=\"").nth(1).unwrap();
        let band = &band[..band.find('"').unwrap()];
        assert_eq!(band.matches('M').count(), 2, "{band}");
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(mb_step(600.0), 256.0);
        assert_eq!(mb_step(1100.0), 512.0);
        assert_eq!(time_step(3_600_000), 10 * 60_000);
        assert_eq!(time_step(7 * 86_400_000), 2 * 86_400_000);
    }
}
