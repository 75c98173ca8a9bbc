//! SVG charts for the HTML reports, written by hand: a few hundred lines for exactly the charts
//! meshway draws (lines and steps on linear or log axes, horizontal bars, one stacked bar),
//! with no dependency, no script and nothing fetched, so a report opens offline and renders
//! the same everywhere. Every number on an axis goes through [`crate::format`].

use std::fmt::Write;

/// Chart size in CSS pixels (the plot area is inset by the margins).
const W: f64 = 720.0;
const H: f64 = 300.0;
const LEFT: f64 = 92.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 48.0;

/// Colours of successive series (colour-blind safe, Okabe-Ito).
pub(crate) const COLOURS: [&str; 8] =
    ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"];

/// Escapes text for SVG and HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            // Control characters (a NUL is an HTML parse error; an escape sequence means
            // nothing on a page) show as the replacement character; line breaks and tabs stay.
            '\n' | '\t' | '\r' => o.push(c),
            c if c.is_control() => o.push('\u{fffd}'),
            // Bidirectional overrides and isolates would reverse the rest of the page's
            // text, numbers included ("190.8ms" read "sm8.091"); noncharacters are not XML.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => o.push('\u{fffd}'),
            c if (c as u32 & 0xfffe) == 0xfffe || ('\u{fdd0}'..='\u{fdef}').contains(&c) => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// One named line of points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// How a line chart draws.
#[derive(Clone)]
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// Log-scale x axis (base 2 ticks), e.g. message sizes.
    pub log_x: bool,
    /// Draw as a staircase (CDFs, time series of intervals).
    pub step: bool,
    /// Formats an axis value for a tick label.
    pub fmt_x: &'a dyn Fn(f64) -> String,
    pub fmt_y: &'a dyn Fn(f64) -> String,
}

fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 12 {
        out.push(t);
        t += step;
    }
    out
}

/// Entry `i` of a legend under a chart, three a row (the frame reserves the rows).
fn legend_entry(out: &mut String, i: usize, colour: &str, name: &str) {
    let ly = H - 2.0 + 16.0 * (i / 3) as f64;
    let lx = LEFT + 210.0 * (i % 3) as f64;
    // Past the palette's eight colours a series is told apart by an outlined swatch (and a
    // dashed line or hollow points in the chart).
    let swatch = if i < COLOURS.len() {
        format!(r##"fill="{colour}""##)
    } else {
        format!(r##"fill="#fff" stroke="{colour}" stroke-width="2""##)
    };
    let _ = write!(
        out,
        r##"<rect x="{lx}" y="{ly}" width="10" height="10" {swatch}/><text x="{tx}" y="{ty}" font-size="11">{n}</text>"##,
        tx = lx + 14.0,
        ty = ly + 9.0,
        n = esc(name)
    );
}

/// `text` shortened with "…" to what fits from `x` to the chart's right edge at `font_px`
/// (bold: about 0.62 of the font size a character, an assumption for the sans-serif
/// fonts browsers use); the full text stays in the chart's `<title>`.
fn fit(text: &str, x: f64, font_px: f64) -> String {
    let max = (((W - x - 8.0) / (font_px * 0.62)).floor() as usize).max(4);
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max - 1).chain(std::iter::once('…')).collect()
    }
}

/// The frame of an x-y chart: title, axis labels. `x_axis` is the x axis's extent (the label
/// is centred under it); None: the full plot width.
fn frame(out: &mut String, title: &str, x_label: &str, y_label: &str, legend_rows: usize, x_axis: Option<(f64, f64)>) {
    let h = H + 16.0 * legend_rows as f64;
    let (xa, xb) = x_axis.unwrap_or((LEFT, W - RIGHT));
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" class="chart"><title>{t}</title><rect width="{W}" height="{h}" fill="#fff"/><text x="{LEFT}" y="20" font-size="14" font-weight="bold">{shown}</text><text x="{cx}" y="{xl}" font-size="12" text-anchor="middle">{x}</text><text transform="translate(14 {cy}) rotate(-90)" font-size="12" text-anchor="middle">{y}</text>"##,
        t = esc(title),
        shown = esc(&fit(title, LEFT, 14.0)),
        cx = (xa + xb) / 2.0,
        xl = H - 8.0,
        cy = TOP + (H - TOP - BOTTOM) / 2.0,
        x = esc(x_label),
        y = esc(y_label),
    );
}

/// The x and y axis lines of a chart's plot area.
fn axes(out: &mut String) {
    let _ = write!(
        out,
        r##"<g stroke="#444" stroke-width="1"><line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b}"/></g>"##,
        b = H - BOTTOM,
        r = W - RIGHT
    );
}

/// Horizontal grid lines with their labels, from 0 to `y1`.
fn y_grid(out: &mut String, y1: f64, py: &dyn Fn(f64) -> f64, fmt: &dyn Fn(f64) -> String) {
    let mut shown = String::new();
    for t in ticks(0.0, y1, 5) {
        let y = py(t);
        let label = fmt(t);
        if label == shown {
            continue;
        }
        shown.clone_from(&label);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" font-size="11" text-anchor="end">{l}</text>"##,
            r = W - RIGHT,
            tx = LEFT - 6.0,
            ty = y + 4.0,
            l = esc(&label)
        );
    }
}

/// One tick under the x axis at `x` (pixels) with its label.
fn x_tick(out: &mut String, x: f64, label: &str) {
    let _ = write!(
        out,
        r##"<line x1="{x:.1}" y1="{b}" x2="{x:.1}" y2="{b2}" stroke="#444"/><text x="{x:.1}" y="{ty}" font-size="11" text-anchor="middle">{l}</text>"##,
        b = H - BOTTOM,
        b2 = H - BOTTOM + 4.0,
        ty = H - BOTTOM + 16.0,
        l = esc(label)
    );
}

/// A line (or staircase) chart of one or more series; None when there is nothing to draw.
pub fn line_chart(c: &LineChart<'_>, series: &[Series]) -> Option<String> {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|p| p.0.is_finite() && p.1.is_finite() && (!c.log_x || p.0 > 0.0))
        .collect();
    if pts.is_empty() {
        return None;
    }
    let fx = |x: f64| if c.log_x { x.log2() } else { x };
    let (mut x0, mut x1) = pts.iter().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(fx(p.0)), a.1.max(fx(p.0))));
    let y1 = pts.iter().fold(0f64, |a, p| a.max(p.1));
    let y1 = if y1 > 0.0 { y1 * 1.05 } else { 1.0 };
    if x1 <= x0 {
        // One x value: a range around it, not below 0 when it is not (a distance of 0 km
        // read "-0 km").
        let pad = if c.log_x || x0 == 0.0 { 1.0 } else { x0.abs() * 0.5 };
        (x0, x1) = (if x0 >= 0.0 && !c.log_x { (x0 - pad).max(0.0) } else { x0 - pad }, x1 + pad);
    }
    let px = |x: f64| LEFT + (fx(x) - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / y1 * (H - TOP - BOTTOM);
    let mut out = String::new();
    let legend_rows = if series.len() > 1 { series.len().div_ceil(3) } else { 0 };
    frame(&mut out, c.title, c.x_label, c.y_label, legend_rows, None);
    // Axes and ticks.
    axes(&mut out);
    y_grid(&mut out, y1, &py, c.fmt_y);
    let xt: Vec<f64> = if c.log_x {
        let (a, b) = (x0.floor() as i32, x1.ceil() as i32);
        let every = ((b - a) / 8).max(1);
        (a..=b)
            .step_by(every as usize)
            .map(|e| 2f64.powi(e))
            .filter(|v| fx(*v) >= x0 - 1e-9 && fx(*v) <= x1 + 1e-9)
            .collect()
    } else {
        ticks(x0, x1, 6)
    };
    let mut shown = String::new();
    for t in xt {
        // Ticks closer than the labels' precision would repeat a label: each is shown once.
        let l = (c.fmt_x)(t);
        if l != shown {
            x_tick(&mut out, px(t), &l);
            shown = l;
        }
    }
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut d = String::new();
        let mut last: Option<(f64, f64)> = None;
        // Drawn left to right, whatever order the points came in.
        let mut drawn: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite() && (!c.log_x || p.0 > 0.0))
            .collect();
        drawn.sort_by(|a, b| a.0.total_cmp(&b.0));
        for &(x, y) in &drawn {
            let (sx, sy) = (px(x), py(y));
            match last {
                None => {
                    let _ = write!(d, "M{sx:.1},{sy:.1}");
                }
                Some((_, ly)) if c.step => {
                    let _ = write!(d, " L{sx:.1},{ly:.1} L{sx:.1},{sy:.1}");
                }
                Some(_) => {
                    let _ = write!(d, " L{sx:.1},{sy:.1}");
                }
            }
            last = Some((sx, sy));
        }
        let dash = if i >= COLOURS.len() { r#" stroke-dasharray="6 3""# } else { "" };
        let _ = write!(out, r##"<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"##);
        if s.points.len() <= 40 {
            for &(x, y) in &s.points {
                if x.is_finite() && y.is_finite() && (!c.log_x || x > 0.0) {
                    let fill = if i < COLOURS.len() {
                        format!(r##"fill="{colour}""##)
                    } else {
                        format!(r##"fill="#fff" stroke="{colour}" stroke-width="1.5""##)
                    };
                    let _ = write!(out, r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" {fill}/>"##, px(x), py(y));
                }
            }
        }
        if series.len() > 1 {
            legend_entry(&mut out, i, colour, &s.name);
        }
    }
    out.push_str("</svg>");
    Some(out)
}

/// Horizontal bars, one per label; None when there is nothing to draw.
pub fn bar_chart(title: &str, rows: &[(String, f64)], fmt: &dyn Fn(f64) -> String) -> Option<String> {
    bar_chart_scaled(title, rows, fmt, f64::MIN_POSITIVE)
}

/// [`bar_chart`] on a scale of at least `scale` at full width: charts meant to be compared
/// (one per plan) pass their common largest value, so equal lengths are equal values.
pub fn bar_chart_scaled(
    title: &str,
    rows: &[(String, f64)],
    fmt: &dyn Fn(f64) -> String,
    scale: f64,
) -> Option<String> {
    let rows: Vec<Bar> = rows.iter().map(|(l, v)| Bar { label: l.clone(), value: *v, mark: None }).collect();
    bars(title, &rows, fmt, scale, None)
}

/// Horizontal bars of shares (0 to 1, shown as percents), scaled to 100% however small the
/// largest is: 0.1% is not drawn as a full bar.
pub fn share_bar_chart(title: &str, rows: &[(String, f64)]) -> Option<String> {
    let rows: Vec<Bar> = rows.iter().map(|(l, v)| Bar { label: l.clone(), value: *v, mark: None }).collect();
    bars(title, &rows, &|v| format!("{:.1}%", v * 100.0), 1.0, None)
}

/// Horizontal bars each against its own objective (label, value, objective): the objective
/// a black tick across the bar's row, a bar above its objective in [`MISS`] colour, with a
/// legend of the three below.
pub fn objective_bar_chart(title: &str, rows: &[(String, f64, f64)], fmt: &dyn Fn(f64) -> String) -> Option<String> {
    let rows: Vec<Bar> = rows.iter().map(|(l, v, o)| Bar { label: l.clone(), value: *v, mark: Some(*o) }).collect();
    bars(title, &rows, fmt, f64::MIN_POSITIVE, Some(("within its objective", "above its objective", "objective")))
}

/// The colour of a bar that misses its objective (Okabe-Ito vermillion).
pub(crate) const MISS: &str = "#D55E00";

/// One bar: its label, value and the objective it is held to, if any.
struct Bar {
    label: String,
    value: f64,
    mark: Option<f64>,
}

/// `text` shortened with "…" to at most `width` pixels at `font_px` (regular weight: about
/// 0.58 of the font size a character).
pub(crate) fn fit_width(text: &str, width: f64, font_px: f64) -> String {
    let max = ((width / (font_px * 0.58)).floor() as usize).max(4);
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max - 1).chain(std::iter::once('…')).collect()
    }
}

/// Bars scaled to the largest value or objective, or to `at_least` when that is larger;
/// `legend`: the names of a bar within and above its objective and of the objective's tick.
fn bars(
    title: &str,
    rows: &[Bar],
    fmt: &dyn Fn(f64) -> String,
    at_least: f64,
    legend: Option<(&str, &str, &str)>,
) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let max = rows
        .iter()
        .flat_map(|r| [r.value, r.mark.unwrap_or(0.0)])
        .filter(|v| v.is_finite())
        .fold(0f64, f64::max)
        .max(at_least);
    let row_h = 22.0;
    let legend_h = if legend.is_some() { 22.0 } else { 0.0 };
    let h = TOP + row_h * rows.len() as f64 + 12.0 + legend_h;
    let label_w = 260.0;
    let bar_w = W - label_w - 90.0;
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" class="chart"><title>{t}</title><rect width="{W}" height="{h}" fill="#fff"/><text x="8" y="20" font-size="14" font-weight="bold">{shown}</text>"##,
        t = esc(title),
        shown = esc(&fit(title, 8.0, 14.0))
    );
    for (i, b) in rows.iter().enumerate() {
        let y = TOP + row_h * i as f64;
        let w = (b.value / max * bar_w).max(1.0);
        let shown = fit_width(&b.label, label_w - 14.0, 11.0);
        // A shortened label keeps its whole text as a tooltip.
        let full = if shown == b.label { String::new() } else { format!("<title>{}</title>", esc(&b.label)) };
        let miss = b.mark.is_some_and(|m| b.value > m);
        let _ = write!(
            out,
            r##"<text x="{lx}" y="{ty:.1}" font-size="11" text-anchor="end">{full}{l}</text><rect x="{bx}" y="{y:.1}" width="{w:.1}" height="{bh}" fill="{c}"/><text x="{vx:.1}" y="{ty:.1}" font-size="11">{v}</text>"##,
            lx = label_w - 6.0,
            ty = y + 14.0,
            l = esc(&shown),
            bx = label_w,
            bh = row_h - 6.0,
            c = if miss { MISS } else { COLOURS[0] },
            vx = label_w + w + 6.0,
            v = esc(&fmt(b.value))
        );
        if let Some(m) = b.mark.filter(|m| m.is_finite()) {
            let mx = label_w + m.max(0.0) / max * bar_w;
            let _ = write!(
                out,
                r##"<line x1="{mx:.1}" y1="{y0:.1}" x2="{mx:.1}" y2="{y1:.1}" stroke="#000" stroke-width="2"><title>objective {o}</title></line>"##,
                y0 = y - 2.0,
                y1 = y + row_h - 4.0,
                o = esc(&fmt(m))
            );
        }
    }
    if let Some((within, above, mark)) = legend {
        let ly = TOP + row_h * rows.len() as f64 + 10.0;
        let mut lx = label_w;
        for (c, name) in [(COLOURS[0], within), (MISS, above)] {
            let _ = write!(
                out,
                r##"<rect x="{lx}" y="{ly}" width="10" height="10" fill="{c}"/><text x="{tx}" y="{ty}" font-size="11">{n}</text>"##,
                tx = lx + 14.0,
                ty = ly + 9.0,
                n = esc(name)
            );
            lx += 14.0 + name.chars().count() as f64 * 6.5 + 18.0;
        }
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#000" stroke-width="2"/><text x="{tx:.1}" y="{ty}" font-size="11">{n}</text>"##,
            x = lx + 5.0,
            y0 = ly - 1.0,
            y1 = ly + 11.0,
            tx = lx + 14.0,
            ty = ly + 9.0,
            n = esc(mark)
        );
    }
    out.push_str("</svg>");
    Some(out)
}

/// One bar split into named segments (a training step: compute, exposed communication).
pub fn stacked_bar(title: &str, parts: &[(String, f64)], fmt: &dyn Fn(f64) -> String) -> Option<String> {
    let total: f64 = parts.iter().map(|p| p.1.max(0.0)).sum();
    if total <= 0.0 {
        return None;
    }
    let h = 110.0;
    let (x0, bw) = (16.0, W - 32.0);
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" class="chart"><title>{t}</title><rect width="{W}" height="{h}" fill="#fff"/><text x="8" y="20" font-size="14" font-weight="bold">{shown}</text>"##,
        t = esc(title),
        shown = esc(&fit(title, 8.0, 14.0))
    );
    let mut x = x0;
    for (i, (name, v)) in parts.iter().enumerate() {
        let w = v.max(0.0) / total * bw;
        let c = COLOURS[i % COLOURS.len()];
        let _ = write!(
            out,
            r##"<rect x="{x:.1}" y="34" width="{w:.1}" height="34" fill="{c}"/><rect x="{lx:.1}" y="80" width="10" height="10" fill="{c}"/><text x="{tx:.1}" y="89" font-size="11">{n}: {v}</text>"##,
            lx = x0 + 230.0 * i as f64,
            tx = x0 + 14.0 + 230.0 * i as f64,
            n = esc(name),
            v = esc(&fmt(*v))
        );
        x += w;
    }
    out.push_str("</svg>");
    Some(out)
}

/// A self-contained HTML page: inline style, no script, nothing fetched.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:24px;max-width:1000px;color:#222}}\
         h1{{font-size:22px}}h2{{font-size:17px;margin-top:28px}}\
         pre{{background:#f6f6f6;padding:10px;overflow-x:auto;font-size:12px}}\
         svg.chart{{display:block;margin:8px 0;border:1px solid #e4e4e4;max-width:100%;height:auto}}\
         p.note{{color:#555;font-size:13px}}</style></head><body><h1>{t}</h1>\n{body}\n</body></html>\n",
        t = esc(title)
    )
}

/// A fabric drawn by tiers, top tier first: one box per tier (its name and a detail line),
/// joined by a connector labelled with the links between the two tiers.
pub fn tier_diagram(title: &str, tiers: &[(String, String)], links: &[String]) -> Option<String> {
    if tiers.is_empty() {
        return None;
    }
    let (box_h, gap) = (46.0, 44.0);
    let h = TOP + tiers.len() as f64 * (box_h + gap) - gap + 16.0;
    let (bx, bw) = (150.0, 420.0);
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" class="chart"><title>{t}</title><rect width="{W}" height="{h}" fill="#fff"/><text x="8" y="20" font-size="14" font-weight="bold">{shown}</text>"##,
        t = esc(title),
        shown = esc(&fit(title, 8.0, 14.0))
    );
    for (i, (name, detail)) in tiers.iter().enumerate() {
        let y = TOP + i as f64 * (box_h + gap);
        let c = COLOURS[i % COLOURS.len()];
        let _ = write!(
            out,
            r##"<rect x="{bx}" y="{y:.1}" width="{bw}" height="{box_h}" rx="6" fill="#f4f8fc" stroke="{c}" stroke-width="2"/><text x="{tx}" y="{ty1:.1}" font-size="13" font-weight="bold" text-anchor="middle">{n}</text><text x="{tx}" y="{ty2:.1}" font-size="11" text-anchor="middle">{d}</text>"##,
            tx = bx + bw / 2.0,
            ty1 = y + 19.0,
            ty2 = y + 36.0,
            n = esc(name),
            d = esc(detail)
        );
        if let Some(label) = links.get(i).filter(|_| i + 1 < tiers.len()) {
            let (y0, y1) = (y + box_h, y + box_h + gap);
            let _ = write!(
                out,
                r##"<line x1="{lx}" y1="{y0:.1}" x2="{lx}" y2="{y1:.1}" stroke="#888" stroke-width="3"/><text x="{tx}" y="{ty:.1}" font-size="11">{l}</text>"##,
                lx = bx + bw / 2.0,
                tx = bx + bw / 2.0 + 10.0,
                ty = y0 + gap / 2.0 + 4.0,
                l = esc(label)
            );
        }
    }
    out.push_str("</svg>");
    Some(out)
}

/// Measured against predicted on log-log axes, one colour per series, with the line of
/// agreement and dashed lines at ±`band` (e.g. 0.25 for ±25%); None when nothing is positive.
pub fn agreement_chart(title: &str, x_label: &str, y_label: &str, series: &[Series], band: f64) -> Option<String> {
    let pts: Vec<(f64, f64)> =
        series.iter().flat_map(|s| s.points.iter().copied()).filter(|p| p.0 > 0.0 && p.1 > 0.0).collect();
    if pts.is_empty() {
        return None;
    }
    let lo = pts.iter().fold(f64::MAX, |a, p| a.min(p.0).min(p.1)).log10().floor();
    let hi = pts.iter().fold(f64::MIN, |a, p| a.max(p.0).max(p.1)).log10().ceil().max(lo + 1.0);
    let side = H - TOP - BOTTOM;
    let p = |v: f64| (v.log10() - lo) / (hi - lo);
    let px = |v: f64| LEFT + p(v) * side;
    let py = |v: f64| H - BOTTOM - p(v) * side;
    let legend_rows = if series.len() > 1 { series.len().div_ceil(3) } else { 0 };
    let mut out = String::new();
    frame(&mut out, title, x_label, y_label, legend_rows, Some((LEFT, LEFT + side)));
    let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
    let _ = write!(
        out,
        r##"<g stroke="#444"><line x1="{LEFT}" y1="{bt}" x2="{r:.1}" y2="{bt}"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bt}"/></g><line x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y1:.1}" stroke="#888"/>"##,
        bt = H - BOTTOM,
        r = LEFT + side,
        x0 = px(a),
        y0 = py(a),
        x1 = px(b),
        y1 = py(b)
    );
    for f in [1.0 + band, 1.0 - band] {
        // y = f x, clipped to the square.
        let (xa, xb) = (a.max(a / f), b.min(b / f));
        let _ = write!(
            out,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#aaa" stroke-dasharray="4 3"/>"##,
            px(xa),
            py(xa * f),
            px(xb),
            py(xb * f)
        );
    }
    let mut e = lo;
    while e <= hi + 1e-9 {
        let v = 10f64.powf(e);
        let label = if v >= 1.0 { format!("{v:.0}") } else { format!("{v}") };
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{label}</text><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{label}</text>"##,
            px(v),
            H - BOTTOM + 16.0,
            LEFT - 6.0,
            py(v) + 4.0
        );
        e += 1.0;
    }
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let fill = if i < COLOURS.len() {
            format!(r##"fill="{colour}" fill-opacity="0.7""##)
        } else {
            format!(r##"fill="none" stroke="{colour}" stroke-width="1.5""##)
        };
        for &(x, y) in s.points.iter().filter(|p| p.0 > 0.0 && p.1 > 0.0) {
            let _ = write!(out, r##"<circle cx="{:.1}" cy="{:.1}" r="3" {fill}/>"##, px(x), py(y));
        }
        if series.len() > 1 {
            legend_entry(&mut out, i, colour, &s.name);
        }
    }
    out.push_str("</svg>");
    Some(out)
}

/// One interval of a latency history: its start, the RTT spread and its loss.
#[derive(Debug, Clone, Copy)]
pub struct BandPoint {
    pub x: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
    /// Lost over sent, 0 to 1.
    pub loss: f64,
}

/// Latency history in the style of smokeping: per interval a light band from min to max, a
/// darker band from median to p90, the median as a line, and a loss mark under the axis
/// (orange from any loss, red from 5%). None when there is nothing to draw.
pub fn band_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    pts: &[BandPoint],
    fmt_x: &dyn Fn(f64) -> String,
    fmt_y: &dyn Fn(f64) -> String,
) -> Option<String> {
    let pts: Vec<BandPoint> =
        pts.iter().copied().filter(|p| [p.x, p.min, p.p50, p.p90, p.max].iter().all(|v| v.is_finite())).collect();
    if pts.is_empty() {
        return None;
    }
    let (mut x0, mut x1) = pts.iter().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.x), a.1.max(p.x)));
    if x1 <= x0 {
        x0 -= 1.0;
        x1 += 1.0;
    }
    let y1 = pts.iter().fold(0f64, |a, p| a.max(p.max));
    let y1 = if y1 > 0.0 { y1 * 1.05 } else { 1.0 };
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / y1 * (H - TOP - BOTTOM);
    let mut out = String::new();
    frame(&mut out, title, x_label, y_label, 1, None);
    axes(&mut out);
    y_grid(&mut out, y1, &py, fmt_y);
    for t in ticks(x0, x1, 6) {
        x_tick(&mut out, px(t), &fmt_x(t));
    }
    // Each interval is a column as wide as the gap to the next point.
    let gap = if pts.len() > 1 { (px(pts[pts.len() - 1].x) - px(pts[0].x)) / (pts.len() - 1) as f64 } else { 8.0 };
    let wcol = gap.clamp(1.0, 24.0);
    for p in &pts {
        let x = px(p.x) - wcol / 2.0;
        let _ = write!(
            out,
            r##"<rect x="{x:.1}" y="{a:.1}" width="{wcol:.1}" height="{h1:.1}" fill="#d9d9d9"/><rect x="{x:.1}" y="{b:.1}" width="{wcol:.1}" height="{h2:.1}" fill="#9ecae1"/>"##,
            a = py(p.max),
            h1 = (py(p.min) - py(p.max)).max(0.5),
            b = py(p.p90),
            h2 = (py(p.p50) - py(p.p90)).max(0.5),
        );
        if p.loss > 0.0 {
            let colour = if p.loss >= 0.05 { "#d62728" } else { "#ff7f0e" };
            let _ = write!(
                out,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{wcol:.1}" height="4" fill="{colour}"><title>loss {l:.1}%</title></rect>"##,
                y = H - BOTTOM + 20.0,
                l = p.loss * 100.0
            );
        }
    }
    let mut d = String::new();
    for (i, p) in pts.iter().enumerate() {
        let _ = write!(d, "{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, px(p.x), py(p.p50));
    }
    let _ = write!(out, r##"<path d="{d}" fill="none" stroke="#08519c" stroke-width="1.5"/>"##);
    for (i, (c, n)) in [("#d9d9d9", "min to max"), ("#9ecae1", "median to p90"), ("#ff7f0e", "loss")].iter().enumerate()
    {
        legend_entry(&mut out, i, c, n);
    }
    out.push_str("</svg>");
    Some(out)
}

/// One bar of a timeline: a label, when it waited from, started and ended, and a shade
/// value from 0 (light) to 1 (dark).
#[derive(Debug, Clone)]
pub struct Span {
    pub label: String,
    pub from: f64,
    pub start: f64,
    pub end: f64,
    pub shade: f64,
}

/// A timeline (Gantt chart): per row a grey bar while waiting and a coloured bar while
/// running, darker for higher `shade`. None when there is nothing to draw.
pub fn timeline(title: &str, x_label: &str, rows: &[Span], fmt_x: &dyn Fn(f64) -> String) -> Option<String> {
    let rows: Vec<&Span> =
        rows.iter().filter(|r| r.end.is_finite() && r.start.is_finite() && r.end >= r.start).collect();
    if rows.is_empty() {
        return None;
    }
    let x0 = rows.iter().fold(f64::MAX, |a, r| a.min(r.from));
    let x1 = rows.iter().fold(f64::MIN, |a, r| a.max(r.end)).max(x0 + 1.0);
    let row_h = 14.0;
    let h = TOP + rows.len() as f64 * row_h + BOTTOM;
    let left = 150.0;
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (W - left - RIGHT);
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" class="chart"><title>{t}</title><rect width="{W}" height="{h}" fill="#fff"/><text x="{left}" y="20" font-size="14" font-weight="bold">{shown}</text><text x="{cx}" y="{xl}" font-size="12" text-anchor="middle">{x}</text>"##,
        t = esc(title),
        shown = esc(&fit(title, left, 14.0)),
        cx = left + (W - left - RIGHT) / 2.0,
        xl = h - 8.0,
        x = esc(x_label),
    );
    time_grid(&mut out, (x0, x1), &px, h - BOTTOM, 16.0, fmt_x);
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + i as f64 * row_h;
        let s = r.shade.clamp(0.0, 1.0);
        // From light blue (0) to dark red (1).
        let (cr, cg, cb) = (
            (158.0 + s * (165.0 - 158.0)) as u8,
            (202.0 - s * (202.0 - 15.0)) as u8,
            (225.0 - s * (225.0 - 21.0)) as u8,
        );
        let _ = write!(
            out,
            r##"<text x="{lx}" y="{ty:.1}" font-size="10" text-anchor="end">{l}</text><rect x="{wx:.1}" y="{y:.1}" width="{ww:.1}" height="{bh}" fill="#ddd"/><rect x="{rx:.1}" y="{y:.1}" width="{rw:.1}" height="{bh}" fill="rgb({cr},{cg},{cb})"/>"##,
            lx = left - 6.0,
            ty = y + 10.0,
            l = esc(&r.label),
            wx = px(r.from),
            ww = (px(r.start) - px(r.from)).max(0.0),
            rx = px(r.start),
            rw = (px(r.end) - px(r.start)).max(1.0),
            bh = row_h - 3.0,
        );
    }
    out.push_str("</svg>");
    Some(out)
}

/// Vertical grid lines from the top of the plot to `base` at round values of `x0..x1`, with
/// their labels `gap` below.
fn time_grid(
    out: &mut String,
    (x0, x1): (f64, f64),
    px: &dyn Fn(f64) -> f64,
    base: f64,
    gap: f64,
    fmt_x: &dyn Fn(f64) -> String,
) {
    for t in ticks(x0, x1, 6) {
        let x = px(t);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{base}" stroke="#eee"/><text x="{x:.1}" y="{ty}" font-size="11" text-anchor="middle">{l}</text>"##,
            ty = base + gap,
            l = esc(&fmt_x(t))
        );
    }
}

/// One cell of a [`grid`]: its text and how it is filled.
#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    /// Background colour; the chosen cells are dark with white text.
    pub fill: &'static str,
    pub chosen: bool,
}

/// A map-like table: one row per label, one column per heading, each cell coloured, with a
/// legend of the fills below. None when there is no row or column.
pub fn grid(title: &str, columns: &[String], rows: &[(String, Vec<Cell>)], legend: &[(&str, &str)]) -> Option<String> {
    if rows.is_empty() || columns.is_empty() {
        return None;
    }
    // Labels at 11 px take about 6.5 px a character.
    let chars = |t: &str| t.chars().count() as f64;
    let label_w = rows.iter().map(|r| chars(&r.0) * 6.5 + 16.0).fold(80.0, f64::max);
    let (cell_h, head_h) = (24.0, 40.0);
    let cell_w = ((W - label_w - 8.0) / columns.len() as f64).max(84.0);
    let width = (label_w + cell_w * columns.len() as f64 + 8.0).max(W);
    let legend_y = TOP + head_h + cell_h * rows.len() as f64 + 10.0;
    let h = legend_y + 22.0;
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {h}" width="{width}" height="{h}" role="img" class="chart"><title>{t}</title><rect width="{width}" height="{h}" fill="#fff"/><text x="8" y="20" font-size="14" font-weight="bold">{shown}</text>"##,
        t = esc(title),
        shown = esc(&fit(title, 8.0, 14.0))
    );
    for (j, c) in columns.iter().enumerate() {
        // Headings may have two lines: the name, then a detail.
        let x = label_w + cell_w * (j as f64 + 0.5);
        for (k, line) in c.split('\n').take(2).enumerate() {
            let _ = write!(
                out,
                r##"<text x="{x:.1}" y="{y:.1}" font-size="11" text-anchor="middle"{b}>{l}</text>"##,
                y = TOP + 14.0 + 14.0 * k as f64,
                b = if k == 0 { r#" font-weight="bold""# } else { "" },
                l = esc(line)
            );
        }
    }
    for (i, (label, cells)) in rows.iter().enumerate() {
        let y = TOP + head_h + cell_h * i as f64;
        let _ = write!(
            out,
            r##"<text x="{lx}" y="{ty:.1}" font-size="11" text-anchor="end">{l}</text>"##,
            lx = label_w - 8.0,
            ty = y + 16.0,
            l = esc(label)
        );
        for (j, c) in cells.iter().enumerate().take(columns.len()) {
            let x = label_w + cell_w * j as f64;
            let _ = write!(
                out,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{ch}" fill="{f}" stroke="#fff" stroke-width="2"/><text x="{tx:.1}" y="{ty:.1}" font-size="11" text-anchor="middle" fill="{tc}"{b}>{t}</text>"##,
                w = cell_w,
                ch = cell_h,
                f = if c.chosen { COLOURS[0] } else { c.fill },
                tx = x + cell_w / 2.0,
                ty = y + 16.0,
                tc = if c.chosen { "#fff" } else { "#222" },
                b = if c.chosen { r#" font-weight="bold""# } else { "" },
                t = esc(&c.text)
            );
        }
    }
    let mut lx = 8.0;
    for (fill, name) in legend {
        let _ = write!(
            out,
            r##"<rect x="{lx}" y="{legend_y}" width="10" height="10" fill="{fill}" stroke="#999" stroke-width="0.5"/><text x="{tx}" y="{ty}" font-size="11">{n}</text>"##,
            tx = lx + 14.0,
            ty = legend_y + 9.0,
            n = esc(name)
        );
        lx += 14.0 + chars(name) * 6.5 + 18.0;
    }
    out.push_str("</svg>");
    Some(out)
}

/// One lane of a [`lanes`] chart: its label and its segments (start, end, kind index).
pub type Lane = (String, Vec<(f64, f64, usize)>);

/// Lanes of segments on one time axis (a training step per pipeline stage): each segment
/// coloured by its kind, gaps left white, a legend of the kinds below. None when no segment
/// has a positive length.
pub fn lanes(
    title: &str,
    x_label: &str,
    rows: &[Lane],
    kinds: &[&str],
    fmt_x: &dyn Fn(f64) -> String,
) -> Option<String> {
    let segs = || rows.iter().flat_map(|r| r.1.iter()).filter(|s| s.0.is_finite() && s.1.is_finite() && s.1 > s.0);
    let x0 = segs().fold(f64::MAX, |a, s| a.min(s.0));
    let x1 = segs().fold(f64::MIN, |a, s| a.max(s.1));
    if segs().next().is_none() || x1 <= x0 {
        return None;
    }
    let (row_h, left) = (18.0, 110.0);
    let legend_y = TOP + rows.len() as f64 * row_h + 34.0;
    let h = legend_y + 22.0;
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (W - left - RIGHT);
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" class="chart"><title>{t}</title><rect width="{W}" height="{h}" fill="#fff"/><text x="8" y="20" font-size="14" font-weight="bold">{shown}</text><text x="{cx}" y="{xl}" font-size="12" text-anchor="middle">{x}</text>"##,
        t = esc(title),
        shown = esc(&fit(title, 8.0, 14.0)),
        cx = left + (W - left - RIGHT) / 2.0,
        xl = legend_y - 6.0,
        x = esc(x_label),
    );
    time_grid(&mut out, (x0, x1), &px, TOP + rows.len() as f64 * row_h, 14.0, fmt_x);
    for (i, (label, s)) in rows.iter().enumerate() {
        let y = TOP + i as f64 * row_h;
        let _ = write!(
            out,
            r##"<text x="{lx}" y="{ty:.1}" font-size="11" text-anchor="end">{l}</text><rect x="{left}" y="{y:.1}" width="{lw:.1}" height="{bh}" fill="#f4f4f4"/>"##,
            lx = left - 6.0,
            ty = y + 12.0,
            l = esc(label),
            lw = W - left - RIGHT,
            bh = row_h - 4.0,
        );
        for &(a, b, k) in s.iter().filter(|s| s.1 > s.0) {
            let _ = write!(
                out,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.2}" height="{bh}" fill="{c}"/>"##,
                x = px(a),
                w = (px(b) - px(a)).max(0.5),
                bh = row_h - 4.0,
                c = COLOURS[k % COLOURS.len()],
            );
        }
    }
    let mut lx = 8.0;
    for (k, name) in kinds.iter().enumerate() {
        let _ = write!(
            out,
            r##"<rect x="{lx}" y="{legend_y}" width="10" height="10" fill="{c}"/><text x="{tx}" y="{ty}" font-size="11">{n}</text>"##,
            c = COLOURS[k % COLOURS.len()],
            tx = lx + 14.0,
            ty = legend_y + 9.0,
            n = esc(name)
        );
        lx += 14.0 + name.chars().count() as f64 * 6.5 + 18.0;
    }
    out.push_str("</svg>");
    Some(out)
}

#[cfg(test)]
mod tests {
    /// Nine series: the ninth reuses the first colour, dashed, with an outlined swatch; a
    /// one-point axis stays at or above 0 and shows each tick label once; points are drawn
    /// left to right.
    #[test]
    fn series_past_the_palette_are_dashed_and_axes_are_sane() {
        let series: Vec<super::Series> = (0..9)
            .map(|i| super::Series { name: format!("s{i}"), points: vec![(0.0, i as f64), (2.0, 1.0), (1.0, 3.0)] })
            .collect();
        let c = super::LineChart {
            title: "t",
            x_label: "x",
            y_label: "y",
            log_x: false,
            step: false,
            fmt_x: &|v| format!("{v:.0} km"),
            fmt_y: &|v| format!("{v:.0}"),
        };
        let svg = super::line_chart(&c, &series).unwrap();
        assert_eq!(svg.matches("stroke-dasharray").count(), 1, "{svg}");
        assert_eq!(svg.matches(r##"fill="#fff" stroke="#0072B2" stroke-width="2""##).count(), 1);
        assert_eq!(svg.matches(r##"fill="#fff" stroke="#0072B2" stroke-width="1.5""##).count(), 3);
        // x from 0 to 2 drawn in order: the path's x coordinates increase.
        let d = svg.split("<path d=\"").nth(1).unwrap().split('"').next().unwrap();
        let xs: Vec<f64> = d
            .split(['M', 'L'])
            .filter(|t| !t.trim().is_empty())
            .map(|t| t.trim().split(',').next().unwrap().parse().unwrap())
            .collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{d}");
        let one = vec![super::Series { name: "a".into(), points: vec![(0.0, 1.0)] }];
        let svg = super::line_chart(&c, &one).unwrap();
        assert!(!svg.contains("-0 km") && !svg.contains(">-1 km<"), "{svg}");
        let labels: Vec<&str> =
            svg.split("text-anchor=\"middle\">").skip(1).map(|t| t.split('<').next().unwrap()).collect();
        let mut dedup = labels.clone();
        dedup.dedup();
        assert_eq!(labels, dedup, "{labels:?}");
    }

    /// A title longer than the chart is shortened with "…" on the chart and kept whole in
    /// its `<title>`; the square agreement chart's x label is centred under its own axis.
    #[test]
    fn long_titles_fit_and_square_charts_centre_their_x_label() {
        let long = "validation ".repeat(20);
        let s = vec![super::Series { name: "a".into(), points: vec![(1.0, 2.0), (10.0, 9.0)] }];
        let svg = super::agreement_chart(&long, "published", "meshway", &s, 0.25).unwrap();
        assert!(svg.contains(&format!("<title>{long}</title>")), "the whole title on hover");
        let shown = svg.split(r#"font-weight="bold">"#).nth(1).unwrap().split('<').next().unwrap();
        assert!(shown.ends_with('…') && shown.chars().count() < long.chars().count(), "{shown}");
        // 0.62 x 14 px a character from x = 92 to 8 px from the 720 px edge: 71 characters.
        assert_eq!(shown.chars().count(), 71);
        let side = super::H - super::TOP - super::BOTTOM;
        let cx = super::LEFT + side / 2.0;
        assert!(
            svg.contains(&format!(
                r#"<text x="{cx}" y="{}" font-size="12" text-anchor="middle">published</text>"#,
                super::H - 8.0
            )),
            "{svg}"
        );
        assert_eq!(super::fit("short", 92.0, 14.0), "short");
    }

    /// Bar, tier and stacked charts shorten a title longer than the chart with "…" inside the
    /// viewBox (the whole in `<title>`), and a bar label longer than its 260 px column, with
    /// the whole label as its tooltip.
    #[test]
    fn bar_and_tier_titles_and_labels_fit_the_chart() {
        let long = format!("{} & <more>", "n".repeat(106));
        let shown = |svg: &str| -> String {
            svg.split(r#"font-weight="bold">"#).nth(1).unwrap().split('<').next().unwrap().to_string()
        };
        let rows = vec![(long.clone(), 1.0)];
        for svg in [
            super::bar_chart(&long, &rows, &|v| format!("{v}")).unwrap(),
            super::tier_diagram(&long, &[("t".into(), "d".into())], &[]).unwrap(),
            super::stacked_bar(&long, &rows, &|v| format!("{v}")).unwrap(),
        ] {
            assert!(svg.contains(&format!("<title>{}</title>", super::esc(&long))));
            let t = shown(&svg);
            // From x = 8 to 8 px from the edge at 0.62 x 14 px a character: 81 characters.
            assert!(t.ends_with('…') && t.chars().count() == 81, "{t}");
        }
        let svg = super::bar_chart("t", &rows, &|v| format!("{v}")).unwrap();
        let label = svg.split(r#"text-anchor="end">"#).nth(1).unwrap();
        assert!(label.starts_with(&format!("<title>{}</title>", super::esc(&long))), "{label}");
        let shown_label = label.split("</title>").nth(1).unwrap().split('<').next().unwrap();
        // 246 px at 0.58 x 11 px a character: 38 characters.
        assert_eq!(shown_label.chars().count(), 38);
        assert!(shown_label.ends_with('…'));
    }

    /// Markup characters are entities; control characters (NUL, ESC) the replacement
    /// character; line breaks stay.
    #[test]
    fn esc_leaves_no_markup_and_no_control_characters() {
        assert_eq!(
            super::esc("<a href=\"x\">&\u{0}\u{1b}[31m\n"),
            "&lt;a href=&quot;x&quot;&gt;&amp;\u{fffd}\u{fffd}[31m\n"
        );
        // A right-to-left override, an isolate, noncharacters; letters of any script stay.
        assert_eq!(
            super::esc("a\u{202e}b\u{2067}c\u{fffe}\u{ffff}\u{fdd0}\u{1fffe}東é"),
            "a\u{fffd}b\u{fffd}c\u{fffd}\u{fffd}\u{fffd}\u{fffd}東é"
        );
    }
}
