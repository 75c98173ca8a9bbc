//! The numbers the HTML reports' charts draw, read back from the SVG: the objective of each
//! region's p99 bar, one scale across compared charts, the rows a chart leaves out, the
//! sites of a multi-site fabric and the DCI between them, the packet-level axes' units.

mod common;
use common::*;

/// The `<svg>` elements of a page.
fn charts(html: &str) -> Vec<&str> {
    html.split("<svg ").skip(1).map(|c| c.split("</svg>").next().unwrap()).collect()
}

/// The value of attribute `name` in the first element of `s`.
fn attr(s: &str, name: &str) -> f64 {
    s.split(&format!(" {name}=\"")).nth(1).unwrap().split('"').next().unwrap().parse().unwrap()
}

/// The p99 TTFT chart draws every region's objective as a tick at its value and colours the
/// bars above it; the same value at the same x on every bar.
#[test]
fn infer_p99_bars_show_their_objective_and_misses() {
    let dir = tempdir("charts-infer");
    let out = dir.join("infer.html");
    let f = "examples/inference-edge-vs-central.toml";
    let o = meshway(&["infer", f, "--duration", "1min", "--html", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let regions = v["regions"].as_array().unwrap();
    let missed = regions
        .iter()
        .filter(|r| r["ttft"]["p99_ns"].as_u64().unwrap() > r["ttft_p99_objective_ns"].as_u64().unwrap())
        .count();
    let html = std::fs::read_to_string(&out).unwrap();
    let bars = charts(&html).into_iter().find(|c| c.contains("p99 time to first token per region")).unwrap();
    assert_eq!(bars.matches(r##"height="16" fill="#D55E00""##).count(), missed, "bars above the objective");
    assert_eq!(bars.matches(r##"height="16" fill="#0072B2""##).count(), regions.len() - missed);
    // One tick a region, all at 250 ms: the same x; and a legend naming the three.
    let ticks: Vec<&str> = bars.split("<line ").skip(1).filter(|l| l.contains("<title>objective")).collect();
    assert_eq!(ticks.len(), regions.len());
    let x1 = |t: &str| attr(&format!(" {t}"), "x1");
    assert!(ticks.iter().all(|t| x1(t) == x1(ticks[0])));
    assert!(bars.contains(">above its objective<") && bars.contains(">within its objective<"));
    // The bar's end over the tick's x is p99 over the objective (same scale, from x = 260).
    let first = bars.split(r##"<rect x="260""##).nth(1).unwrap();
    let (w, tick) = (attr(first, "width"), x1(ticks[0]) - 260.0);
    let r0 = &regions[0];
    let want = r0["ttft"]["p99_ns"].as_f64().unwrap() / r0["ttft_p99_objective_ns"].as_f64().unwrap();
    assert!((w / tick - want).abs() < 0.01, "{w} / {tick} vs {want}");
    // The tail chart marks 99% and 99.9% on its axis.
    assert!(html.contains(">99%<") && html.contains(">99.9%<"), "the tail's axis");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `place --html`: every plan's GPUs per site on one scale, so lengths are in the ratio of
/// the GPU counts across charts (the optimized plan's larger site is drawn longer).
#[test]
fn place_gpu_charts_share_one_scale() {
    let dir = tempdir("charts-place");
    let out = dir.join("place.html");
    let o = meshway(&["place", "examples/inference-edge-vs-central.toml", "--no-sim", "--html", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&out).unwrap();
    let mut per_gpu: Vec<(f64, f64)> = Vec::new();
    for c in charts(&html).into_iter().filter(|c| c.contains("GPUs per site")) {
        for bar in c.split(r##"<rect x="260""##).skip(1) {
            let w = attr(bar, "width");
            let gpus: f64 = bar
                .split("font-size=\"11\">")
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .replace(',', "")
                .parse()
                .unwrap();
            per_gpu.push((gpus, w));
        }
    }
    assert!(per_gpu.len() >= 4, "{per_gpu:?}");
    let (g0, w0) = per_gpu.iter().copied().fold((0.0, 0.0), |a, x| if x.0 > a.0 { x } else { a });
    // The largest site anywhere is the full 370 px; every other bar is to its scale (0.1 px).
    assert_eq!(w0, 370.0);
    for (g, w) in &per_gpu {
        assert!((w - g / g0 * 370.0).abs() <= 0.051, "{g} GPUs drawn {w} px, the scale is {g0} GPUs at {w0} px");
    }
    let counts: std::collections::BTreeSet<u64> = per_gpu.iter().map(|p| p.0 as u64).collect();
    assert!(counts.len() >= 3, "bars of several sizes: {counts:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// 336 and 392 GPUs in two compared charts are drawn in the ratio 336:392, not both full width
/// (the unit behind `place --html`).
#[test]
fn bars_on_a_common_scale_keep_their_ratio() {
    let one = |n: f64| {
        let svg = meshway_report::svg::bar_chart_scaled("t", &[("us-central".into(), n)], &|v| format!("{v}"), 392.0)
            .unwrap();
        attr(svg.split(r##"<rect x="260""##).nth(1).unwrap(), "width")
    };
    let (a, b) = (one(336.0), one(392.0));
    assert_eq!(b, 370.0);
    assert!((a / b - 336.0 / 392.0).abs() < 0.001, "{a} / {b}");
}

/// `validate --html`: collectives rows published at 0 GB/s are drawn at the busbw of their
/// published time, and the note says so; the plan chart says which row it leaves out.
#[test]
fn validate_charts_count_the_rows_they_leave_out() {
    let dir = tempdir("charts-validate");
    let set = dir.join("set");
    std::fs::create_dir_all(set.join("collectives")).unwrap();
    let rows = std::fs::read_to_string(root().join("validation/collectives/nccl-tests.csv")).unwrap();
    let mut lines = rows.lines().filter(|l| !l.starts_with('#'));
    let mut keep: Vec<&str> = vec![lines.next().unwrap()];
    // Four rows at 8 B published at 0.00 GB/s (with their times), two of a GB/s or more.
    let zero = ["dgxc-h100-8-01", "gh-nccltests309-h100-16-01", "together-ar-h100-8ring-01", "snellius-h100-8-ar-01"];
    keep.extend(rows.lines().filter(|l| zero.iter().any(|z| l.starts_with(&format!("{z},")))));
    assert_eq!(keep.len(), 5);
    keep.extend(
        rows.lines()
            .filter(|l| l.starts_with("az-ndh100v5-"))
            .filter(|l| l.split(',').nth(12).and_then(|b| b.parse::<f64>().ok()).is_some_and(|b| b >= 1.0))
            .take(2),
    );
    std::fs::write(set.join("collectives/nccl-tests.csv"), keep.join("\n") + "\n").unwrap();
    std::fs::copy(root().join("validation/collectives/setups.toml"), set.join("collectives/setups.toml")).unwrap();
    let out = dir.join("v.html");
    let o = meshway(&["validate", set.to_str().unwrap(), "--set", "collectives", "--html", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&out).unwrap();
    assert_eq!(html.matches("<circle").count(), 6, "every row a point");
    assert!(
        html.contains("4 rows published at 0 GB/s (busbw rounded to 0.00) are drawn at the bus bandwidth their published time gives."),
        "{html}"
    );
    assert!(!html.contains("not shown"));
    // The plan set: one published count of 0 cannot be drawn on log axes.
    let out = dir.join("p.html");
    let o = meshway(&["validate", "validation", "--set", "plan", "--html", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = v["plan"]["rows"].as_array().unwrap();
    let zero = all
        .iter()
        .filter(|r| r["planned"].as_f64().is_some_and(|p| p <= 0.0) || r["published"].as_f64().unwrap() <= 0.0)
        .count();
    let none = all.iter().filter(|r| r["planned"].is_null()).count();
    let html = std::fs::read_to_string(&out).unwrap();
    assert_eq!(html.matches("<circle").count(), all.len() - zero - none);
    assert!(zero + none > 0);
    let mut want = format!("{} of {} rows not shown: {zero} with a count of 0 (on log axes)", zero + none, all.len());
    if none > 0 {
        want.push_str(&format!(", {none} with no meshway count"));
    }
    assert!(html.contains(&format!("{want}.")), "{want}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A two-site fabric is drawn per site: both sites named, each with its own spine, leaf and
/// border boxes and its GPUs under its leaves, and the DCI between them with its count, rate
/// and distance; no site's border leaves stand between leaves and GPUs.
#[test]
fn multi_site_plans_draw_each_site_and_the_dci() {
    let dir = tempdir("charts-sites");
    let out = dir.join("two.html");
    let o = meshway(&["plan", "examples/two-site-100km.toml", "--html", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&out).unwrap();
    let svg = charts(&html).into_iter().find(|c| c.contains("joined by DCI")).expect("a site diagram");
    assert!(svg.contains(">site dc-a<") && svg.contains(">site dc-b<"));
    assert!(svg.contains(">DCI dc-a – dc-b: 16 x 400Gbps (400g-zr), 100km<"), "{svg}");
    for (tier, n) in [("spine: 16", 2), ("leaf: 16", 2), ("border: 1", 2), ("512 GPUs", 2)] {
        assert_eq!(svg.matches(&format!(">{tier}<")).count(), n, "{tier}");
    }
    // The GPUs hang off the leaves (512 NIC links each site), the border leaves off the spines.
    assert_eq!(svg.matches(">512 x 400Gbps<").count(), 4, "leaf-spine and NIC links per site");
    assert_eq!(svg.matches(">32 x 400Gbps<").count(), 2, "border-spine links per site");
    // Each site's GPU box is below and within its leaf box's span, not under the border.
    let y_of = |label: &str| -> Vec<f64> {
        let parts: Vec<&str> = svg.split(&format!(">{label}<")).collect();
        parts[..parts.len() - 1].iter().map(|before| attr(before.rsplit("<rect ").next().unwrap(), "y")).collect()
    };
    let (leaf, border, gpus) = (y_of("leaf: 16"), y_of("border: 1"), y_of("512 GPUs"));
    assert!(leaf.iter().zip(&gpus).all(|(l, g)| g > l) && leaf == border, "{leaf:?} {border:?} {gpus:?}");
    // The merged tiers are not drawn.
    assert!(!html.contains("fabric</text>") && !html.contains(">border: 2 switches<"));
    // Three sites in a line: two spans, each with its own distance and optic.
    let out = dir.join("three.html");
    let o = meshway(&["plan", "examples/three-site-zr-plus.toml", "--html", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains(">DCI a – b: 8 x 400Gbps (400g-zr), 80km<"), "a-b");
    assert!(html.contains(">DCI b – c: 4 x 400Gbps (400g-zr-plus), 300km<"), "b-c");
    assert!(html.contains(">core: 2<") && html.matches(">spine: 8<").count() == 2 && html.contains(">access: 6<"));
    // Determinism: the same page again.
    let again = dir.join("three2.html");
    let o = meshway(&["plan", "examples/three-site-zr-plus.toml", "--html", again.to_str().unwrap()]);
    assert!(o.status.success());
    assert_eq!(html, std::fs::read_to_string(&again).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Packet-level charts: the queue axis in one binary unit at round steps of it, the paused
/// axis in one time unit; the text's deepest queues deepest first.
#[test]
fn packet_chart_axes_use_one_unit_and_queues_sort_by_depth() {
    let dir = tempdir("charts-packet");
    let out = dir.join("pk.html");
    let o = meshway(&["simulate", "examples/incast-pfc.toml", "--fidelity", "both", "--html", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&out).unwrap();
    let labels = |title: &str| -> Vec<String> {
        let c = charts(&html).into_iter().find(|c| c.contains(title)).unwrap();
        c.split(r#"font-size="11" text-anchor="end">"#)
            .skip(1)
            .map(|t| t.split('<').next().unwrap().to_string())
            .collect()
    };
    let q = labels("Deepest queues over time");
    assert!(q.len() >= 3 && q.iter().all(|l| l.ends_with(" KiB")), "{q:?}");
    let steps: Vec<f64> = q.iter().map(|l| l.trim_end_matches(" KiB").parse().unwrap()).collect();
    assert!(steps.iter().all(|s| s.fract() == 0.0) && steps.windows(2).all(|w| w[1] - w[0] == steps[1] - steps[0]));
    let p = labels("Time paused per interval");
    let unit = p[0].rsplit(' ').next().unwrap().to_string();
    assert!(p.len() >= 3 && p.iter().all(|l| l.ends_with(&format!(" {unit}"))), "{p:?}");
    // The table: deepest queue column in KiB, deepest first.
    let text = stdout(&o);
    let table = text.split("Deepest queues (time series").nth(1).unwrap();
    let depths: Vec<f64> = table
        .lines()
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let cell = l.split_whitespace().rev().nth(3).unwrap();
            let (n, mult) = if let Some(k) = cell.strip_suffix("KiB") {
                (k, 1024.0)
            } else if let Some(m) = cell.strip_suffix("MiB") {
                (m, 1048576.0)
            } else {
                (cell.trim_end_matches('B'), 1.0)
            };
            n.parse::<f64>().unwrap() * mult
        })
        .collect();
    assert!(depths.len() >= 3 && depths.windows(2).all(|w| w[0] >= w[1]), "{depths:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An NVL72 plan's GPU box names its NVLink domains (72 GPUs, 18 hosts, 9 trays), not
/// "NVLink switches inside each host": the trays serve a rack.
#[test]
fn nvl72_plans_name_their_domains() {
    let dir = tempdir("charts-nvl72");
    let out = dir.join("p.html");
    let o = meshway(&["plan", "examples/nvl72-576.toml", "--html", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("NVLink domains of 72 GPUs (18 hosts, 9 switch trays each)"));
    assert!(!html.contains("NVLink switches inside each host"));
}
