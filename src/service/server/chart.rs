//! One dyno's memory chart as inline SVG: a time axis and an MB axis with
//! labels, the min–max band and the average of each bucket, the swap used
//! as an area along the bottom, the quota and the restart threshold as
//! distinct lines, and a marker per restart, failed restart, R14, R15,
//! recovery, instance change and release of the app (each with a `<title>`,
//! shown on hover). Pure: data in, markup out.

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
    /// A release of the app: drawn on every dyno's chart.
    Release,
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
            Self::Release => "mk-release",
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
    /// Set when the axis starts later than the range asked for (there is
    /// no older history): the chart says since when (unix ms).
    pub history_since: Option<i64>,
}

const W: f64 = 360.0;
const H: f64 = 150.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 354.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 126.0;

/// Text for the markup, escaped (by maud, as the page's own text is).
fn text(s: &str) -> String {
    maud::html! { (s) }.into_string()
}

/// Where a time (unix ms) and an amount (MB) land in the plot.
struct Scale {
    from: i64,
    span: i64,
    ymax: f64,
}

impl Scale {
    fn x(&self, t: i64) -> f64 {
        LEFT + (t - self.from) as f64 / self.span as f64 * (RIGHT - LEFT)
    }

    fn y(&self, v: f64) -> f64 {
        BOTTOM - (v / self.ymax).clamp(0.0, 1.05) * (BOTTOM - TOP)
    }

    /// The middle of a point's bucket.
    fn mid(&self, p: &HistoryPoint, bucket: i64) -> f64 {
        self.x(p.t + (bucket as f64 / 2.0) as i64)
    }
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

/// Space kept between a label and the viewBox's edge.
const EDGE: f64 = 1.0;

/// A generous width of a label at the chart's 9.5 px font: a label is
/// placed by it, so too wide is safe, too narrow is cut.
fn text_width(label: &str) -> f64 {
    label.chars().count() as f64 * 6.0
}

/// `14:05 UTC`, or with the day when the axis spans more than one.
fn since_label(since: i64, to: i64) -> String {
    let t = Timestamp::from_millisecond(since).unwrap_or(Timestamp::UNIX_EPOCH);
    if to - since > 86_400_000 {
        t.strftime("%b %d %H:%M UTC").to_string()
    } else {
        t.strftime("%H:%M UTC").to_string()
    }
}

/// The highest swap of each bucket as an area along the bottom, on the MB
/// axis, with its peak as a label: Heroku swaps a dyno past its quota, so
/// a swapping dyno is one to look at even when its band looks flat. A
/// bucket that swapped at all is at least a hairline high.
fn swap_area(s: &mut String, c: &Chart, runs: &[&[HistoryPoint]], sc: &Scale) {
    let peak = c
        .points
        .iter()
        .filter_map(|p| p.swap)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    if peak <= 0.0 {
        return;
    }
    let mid = |p: &HistoryPoint| sc.mid(p, c.bucket);
    let top = |p: &HistoryPoint| match p.swap.filter(|v| *v > 0.0) {
        Some(v) => sc.y(v).min(BOTTOM - 1.5),
        None => BOTTOM,
    };
    let mut d = String::new();
    for run in runs {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        if run.len() == 1 {
            let _ = write!(
                d,
                "M{0:.1},{BOTTOM}V{1:.1}h2V{BOTTOM}Z",
                mid(first) - 1.0,
                top(first)
            );
            continue;
        }
        let _ = write!(d, "M{:.1},{BOTTOM}", mid(first));
        for p in run.iter() {
            let _ = write!(d, "L{:.1},{:.1}", mid(p), top(p));
        }
        let _ = write!(d, "L{:.1},{BOTTOM}Z", mid(last));
    }
    let _ = write!(
        s,
        "<g class=\"swap\"><title>swap, up to {0}</title><path d=\"{d}\"/><text x=\"{1:.1}\" y=\"{2:.1}\" text-anchor=\"end\">swap {0}</text></g>",
        mb(peak),
        RIGHT - 2.0,
        BOTTOM - 3.0
    );
}

/// The quota (solid) and the restart threshold (dashed) as lines, each
/// labelled where it does not cross the other line. Lines closer than a few
/// pixels (the default threshold is the quota itself) are drawn side by
/// side, so both stay visible, under one label.
fn limits(s: &mut String, quota: Option<f64>, threshold: Option<f64>, sc: &Scale) {
    const CLOSE: f64 = 3.0;
    const LABEL: f64 = 11.0;
    let line =
        |yy: f64| format!("<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/>");
    let (yq, yl) = (quota.map(|v| sc.y(v)), threshold.map(|v| sc.y(v)));
    if let (Some(q), Some(l), Some(yq), Some(yl)) = (quota, threshold, yq, yl)
        && (yq - yl).abs() < CLOSE
    {
        // The higher value on top (y grows downwards); equal: quota on top.
        let centre = (yq + yl) / 2.0;
        let (yq, yl) = if l > q {
            (centre + 1.1, centre - 1.1)
        } else {
            (centre - 1.1, centre + 1.1)
        };
        let label = if (q - l).abs() < 0.5 {
            format!("quota = threshold {}", mb(q))
        } else {
            format!("quota {} · restart at {}", mb(q), mb(l))
        };
        let _ = write!(
            s,
            "<g class=\"quota\"><title>quota {}</title>{}<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text></g><g class=\"threshold\"><title>restart threshold {}</title>{}</g>",
            mb(q),
            line(yq),
            RIGHT - 2.0,
            yq.min(yl) - 2.5,
            mb(l),
            line(yl),
        );
        return;
    }
    if let (Some(q), Some(yy)) = (quota, yq) {
        // Above its line, unless the threshold's line runs just above it.
        let above = yl.is_none_or(|yl| !(yl < yy && yy - yl < LABEL));
        let _ = write!(
            s,
            "<g class=\"quota\"><title>quota {}</title>{}<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">quota {}</text></g>",
            mb(q),
            line(yy),
            RIGHT - 2.0,
            if above { yy - 2.5 } else { yy + 9.5 },
            mb(q)
        );
    }
    if let (Some(l), Some(yy)) = (threshold, yl) {
        // Below its line, unless the quota's line runs just below it.
        let below = yq.is_none_or(|yq| !(yq > yy && yq - yy < LABEL));
        let _ = write!(
            s,
            "<g class=\"threshold\"><title>restart threshold {}</title>{}<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"start\">restart at {}</text></g>",
            mb(l),
            line(yy),
            LEFT + 3.0,
            if below { yy + 9.5 } else { yy - 2.5 },
            mb(l)
        );
    }
}

/// The chart: axes, the band and average, swap, quota and threshold,
/// markers; a note when there is no history.
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
    let sc = Scale {
        from: c.from,
        span,
        ymax: (top_value / step).ceil() * step,
    };
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\" data-from=\"{}\" data-to=\"{}\">",
        text(c.label),
        c.from,
        c.to
    );
    s.push_str("<rect class=\"plot\" x=\"40\" y=\"12\" width=\"314\" height=\"114\"/>");
    mb_axis(&mut s, &sc, step);
    time_axis(&mut s, c, &sc);
    let runs = runs(c);
    band(&mut s, c, &runs, &sc);
    swap_area(&mut s, c, &runs, &sc);
    limits(&mut s, c.quota, c.threshold, &sc);
    for m in c.marks.iter().filter(|m| m.at >= c.from && m.at <= c.to) {
        marker(&mut s, m, sc.x(m.at));
    }
    if c.points.is_empty() {
        s.push_str("<text x=\"197\" y=\"72\" text-anchor=\"middle\" class=\"empty\">no history in this range yet</text>");
    }
    s.push_str("</svg>");
    s
}

/// The MB axis: gridlines and labels every `step`.
fn mb_axis(s: &mut String, sc: &Scale, step: f64) {
    s.push_str("<g class=\"axis y\">");
    let mut v = 0.0;
    while v <= sc.ymax + 0.001 {
        let yy = sc.y(v);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/><text x=\"36\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>",
            yy + 3.5
        );
        v += step;
    }
    s.push_str("<text x=\"2\" y=\"8\" class=\"unit\">MB</text></g>");
}

/// The time axis, and since when there is history if the axis starts
/// later than the range. A label is centred on its tick unless that would
/// cut it at the viewBox's right edge (a range ending on a tick showed
/// `21:3`): then it ends at the edge.
fn time_axis(s: &mut String, c: &Chart, sc: &Scale) {
    let tstep = time_step(sc.span);
    s.push_str("<g class=\"axis x\">");
    let mut t = (c.from + tstep - 1).div_euclid(tstep) * tstep;
    while t <= c.to {
        let xx = sc.x(t);
        let label = time_label(t, tstep);
        let (lx, anchor) = if xx + text_width(&label) / 2.0 > W - EDGE {
            (W - EDGE, "end")
        } else {
            (xx, "middle")
        };
        let _ = write!(
            s,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{TOP}\" y2=\"{:.1}\"/><text x=\"{lx:.1}\" y=\"140\" text-anchor=\"{anchor}\">{label}</text>",
            BOTTOM + 3.0,
        );
        t += tstep;
    }
    s.push_str("<text x=\"354\" y=\"149\" text-anchor=\"end\" class=\"unit\">UTC</text></g>");
    if let Some(since) = c.history_since {
        let _ = write!(
            s,
            "<text x=\"{LEFT}\" y=\"149\" class=\"since\">history since {}</text>",
            since_label(since, c.to)
        );
    }
}

/// Runs of points without gaps (points further apart than two buckets).
fn runs<'p>(c: &Chart<'p>) -> Vec<&'p [HistoryPoint]> {
    let mut runs: Vec<&[HistoryPoint]> = Vec::new();
    let mut start = 0;
    for i in 1..=c.points.len() {
        if i == c.points.len() || c.points[i].t - c.points[i - 1].t > 2 * c.bucket.max(60_000) {
            runs.push(&c.points[start..i]);
            start = i;
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

/// The min–max band and the average line of each run (a lone point: a
/// short dash).
fn band(s: &mut String, c: &Chart, runs: &[&[HistoryPoint]], sc: &Scale) {
    let mid = |p: &HistoryPoint| sc.mid(p, c.bucket);
    let mut band = String::new();
    let mut avg = String::new();
    for run in runs {
        if run.len() == 1 {
            let p = &run[0];
            let _ = write!(avg, "M{:.1},{:.1}h1.5", mid(p) - 0.75, sc.y(p.avg));
        }
        for (i, p) in run.iter().enumerate() {
            let to = if i == 0 { "M" } else { "L" };
            let _ = write!(band, "{to}{:.1},{:.1}", mid(p), sc.y(p.max));
            if run.len() > 1 {
                let _ = write!(avg, "{to}{:.1},{:.1}", mid(p), sc.y(p.avg));
            }
        }
        for p in run.iter().rev() {
            let _ = write!(band, "L{:.1},{:.1}", mid(p), sc.y(p.min));
        }
        band.push('Z');
    }
    if !band.is_empty() {
        let _ = write!(
            s,
            "<path class=\"band\" d=\"{band}\"/><path class=\"avg\" d=\"{avg}\"/>"
        );
    }
}

/// One marker at `xx`, its title shown on hover.
fn marker(s: &mut String, m: &Mark, xx: f64) {
    let _ = write!(
        s,
        "<g class=\"mk {}\"><title>{}</title>",
        m.kind.class(),
        text(&m.title)
    );
    let line = format!("<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{TOP}\" y2=\"{BOTTOM}\"/>");
    let _ = match m.kind {
        MarkKind::Restart | MarkKind::RestartFailed => {
            write!(s, "{line}<path d=\"M{:.1},2h9l-4.5,8z\"/>", xx - 4.5)
        }
        MarkKind::Instance => write!(s, "{line}"),
        // A line with a small flag at its top, inside the plot (the
        // restart triangles sit above it).
        MarkKind::Release => write!(s, "{line}<path d=\"M{xx:.1},{TOP}h7l-2.5,3l2.5,3h-7z\"/>"),
        MarkKind::R14 => write!(
            s,
            "<circle cx=\"{xx:.1}\" cy=\"{:.1}\" r=\"3.5\"/>",
            TOP + 5.0
        ),
        MarkKind::R15 => write!(
            s,
            "<path d=\"M{:.1},{:.1}l8,8m0,-8l-8,8\"/>",
            xx - 4.0,
            TOP + 1.0
        ),
        MarkKind::Recovered => write!(
            s,
            "<circle cx=\"{xx:.1}\" cy=\"{:.1}\" r=\"3.5\"/>",
            BOTTOM - 5.0
        ),
    };
    s.push_str("</g>");
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
            history_since: None,
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

    const MIN: i64 = 60_000;

    fn hour_of(pts: &[HistoryPoint], marks: &[Mark], quota: f64, threshold: f64) -> String {
        let base = pts.first().map_or(0, |p| p.t);
        svg(&Chart {
            from: base,
            to: base + 60 * MIN,
            bucket: MIN,
            points: pts,
            quota: Some(quota),
            threshold: Some(threshold),
            marks,
            label: "web.1",
            history_since: None,
        })
    }

    fn hour(base: i64, v: f64) -> Vec<HistoryPoint> {
        (0..60).map(|i| point(base + i * MIN, v)).collect()
    }

    /// The `d` of the first element with this class.
    fn path_of<'s>(svg: &'s str, class: &str) -> Option<&'s str> {
        let g = &svg[svg.find(&format!("class=\"{class}\""))?..];
        let d = &g[g.find(" d=\"")? + 4..];
        Some(&d[..d.find('"')?])
    }

    #[test]
    fn swap_is_an_area_along_the_bottom_with_its_peak() {
        let base = 1_763_700_000_000 / 3_600_000 * 3_600_000;
        let mut pts = hour(base, 300.0);
        let none = hour_of(&pts, &[], 512.0, 512.0);
        assert!(!none.contains("class=\"swap\""), "no swap, no area");
        pts[40].swap = Some(0.2);
        pts[50].swap = Some(64.0);
        let svg = hour_of(&pts, &[], 512.0, 512.0);
        let d = path_of(&svg, "swap").expect("a swap path");
        assert!(d.starts_with('M') && d.ends_with('Z'), "a closed area: {d}");
        // 64 MB on a 768 MB axis: 9.5 px above the bottom; 0.2 MB still a hairline.
        assert!(d.contains(",116.5L"), "{d}");
        assert!(d.contains(",124.5L"), "{d}");
        assert!(svg.contains("<title>swap, up to 64 MB</title>"), "{svg}");
        assert!(svg.contains(">swap 64 MB</text>"), "{svg}");
    }

    #[test]
    fn a_release_marker_has_its_version_and_author_on_hover() {
        let base = 1_763_700_000_000 / 3_600_000 * 3_600_000;
        let marks = [Mark {
            at: base + 20 * MIN,
            kind: MarkKind::Release,
            title: "v123 by <dev>@example.com".into(),
        }];
        let svg = hour_of(&hour(base, 300.0), &marks, 512.0, 512.0);
        let g = &svg[svg
            .find("<g class=\"mk mk-release\">")
            .expect("a release marker")..];
        let g = &g[..g.find("</g>").unwrap()];
        assert!(
            g.contains("<title>v123 by &lt;dev&gt;@example.com</title>"),
            "{g}"
        );
        let x = format!("{:.1}", LEFT + 20.0 / 60.0 * (RIGHT - LEFT));
        assert!(
            g.contains(&format!(
                "<line x1=\"{x}\" x2=\"{x}\" y1=\"{TOP}\" y2=\"{BOTTOM}\"/>"
            )),
            "a vertical line at its time: {g}"
        );
    }

    /// The y of each `<line>` in the group of this class, and its texts.
    fn group<'s>(svg: &'s str, class: &str) -> (Vec<f64>, Vec<&'s str>) {
        let Some(at) = svg.find(&format!("<g class=\"{class}\">")) else {
            return (Vec::new(), Vec::new());
        };
        let g = &svg[at..];
        let g = &g[..g.find("</g>").unwrap()];
        let ys = g
            .split("y1=\"")
            .skip(1)
            .map(|r| r[..r.find('"').unwrap()].parse().unwrap())
            .collect();
        let texts = g
            .split("<text")
            .skip(1)
            .map(|r| &r[r.find('>').unwrap() + 1..r.find("</text>").unwrap()])
            .collect();
        (ys, texts)
    }

    #[test]
    fn a_threshold_equal_to_the_quota_is_drawn_beside_it_under_one_label() {
        let base = 1_763_700_000_000 / 3_600_000 * 3_600_000;
        let svg = hour_of(&hour(base, 300.0), &[], 512.0, 512.0);
        let (quota, q_texts) = group(&svg, "quota");
        let (threshold, t_texts) = group(&svg, "threshold");
        assert_eq!((quota.len(), threshold.len()), (1, 1), "{svg}");
        assert!(
            (quota[0] - threshold[0]).abs() >= 2.0,
            "both lines visible: {quota:?} {threshold:?}"
        );
        assert_eq!(q_texts, ["quota = threshold 512 MB"]);
        assert!(t_texts.is_empty(), "one label: {t_texts:?}");
        assert!(svg.contains("<title>restart threshold 512 MB</title>"));

        // Apart: a label each, neither crossing the other's line.
        let svg = hour_of(&hour(base, 300.0), &[], 512.0, 460.8);
        assert_eq!(group(&svg, "quota").1, ["quota 512 MB"]);
        assert_eq!(group(&svg, "threshold").1, ["restart at 461 MB"]);
        // A threshold just above the quota: its label goes above its line,
        // the quota's below its own.
        let svg = hour_of(&hour(base, 300.0), &[], 512.0, 540.0);
        let label_y = |class: &str| {
            let g = &svg[svg.find(&format!("<g class=\"{class}\">")).unwrap()..];
            let t = &g[g.find("<text").unwrap()..];
            let y = &t[t.find("y=\"").unwrap() + 3..];
            y[..y.find('"').unwrap()].parse::<f64>().unwrap()
        };
        let (yq, yl) = (group(&svg, "quota").0[0], group(&svg, "threshold").0[0]);
        assert!(yl < yq, "540 above 512");
        assert!(label_y("threshold") < yl && label_y("quota") > yq, "{svg}");
    }

    #[test]
    fn time_labels_stay_inside_the_view_box() {
        // A range ending on a tick: the last label (21:30-like) at the edge.
        let base = 1_763_700_000_000 / 3_600_000 * 3_600_000;
        for to in [base + 60 * MIN, base + 59 * MIN, base + 2 * 24 * 60 * MIN] {
            let svg = svg(&Chart {
                from: base,
                to,
                bucket: MIN,
                points: &[],
                quota: None,
                threshold: None,
                marks: &[],
                label: "web.1",
                history_since: None,
            });
            let axis = &svg[svg.find("<g class=\"axis x\">").unwrap()..];
            let axis = &axis[..axis.find("</g>").unwrap()];
            let labels: Vec<&str> = axis.split("<text ").skip(1).collect();
            assert!(labels.len() >= 3, "{axis}");
            for l in labels {
                let attr = |name: &str| {
                    let v = &l[l.find(&format!("{name}=\"")).unwrap() + name.len() + 2..];
                    v[..v.find('"').unwrap()].to_owned()
                };
                let x: f64 = attr("x").parse().unwrap();
                let text = &l[l.find('>').unwrap() + 1..l.find("</text>").unwrap()];
                let w = text_width(text);
                let (left, right) = match attr("text-anchor").as_str() {
                    "end" => (x - w, x),
                    "middle" => (x - w / 2.0, x + w / 2.0),
                    _ => (x, x + w),
                };
                assert!(left >= 0.0 && right <= W, "{text} at {x} cut: {axis}");
            }
        }
    }

    #[test]
    fn a_range_shorter_than_asked_says_since_when() {
        let base = 1_763_700_000_000 / 3_600_000 * 3_600_000 + 5 * MIN;
        let mut c = Chart {
            from: base,
            to: base + 100 * MIN,
            bucket: MIN,
            points: &[],
            quota: None,
            threshold: None,
            marks: &[],
            label: "web.1",
            history_since: None,
        };
        assert!(!svg(&c).contains("history since"));
        c.history_since = Some(base);
        let at = time_label(base, MIN);
        assert!(
            svg(&c).contains(&format!(">history since {at} UTC</text>")),
            "{}",
            svg(&c)
        );
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(mb_step(600.0), 256.0);
        assert_eq!(mb_step(1100.0), 512.0);
        assert_eq!(time_step(3_600_000), 10 * 60_000);
        assert_eq!(time_step(7 * 86_400_000), 2 * 86_400_000);
    }
}
