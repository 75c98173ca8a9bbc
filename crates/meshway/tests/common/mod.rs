//! Helpers shared by the CLI test files: run the binary from the repository root, read its
//! output, compare with golden files.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch directory for one test, named for it and this process.
pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshway-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn meshway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshway")).args(args).current_dir(root()).output().expect("run meshway")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Compares with tests/golden/NAME; `UPDATE_GOLDEN=1` rewrites it.
pub fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(expected == actual, "golden {name} differs (UPDATE_GOLDEN=1 to accept):\n{actual}");
}

/// Renders a report headless in Debian's chromium, as a person opens it, and checks what a
/// person would see: chromium logs no console message (an SVG attribute it cannot parse is
/// one), the page asks the network for nothing (chromium's own net log, filtered to requests
/// made for the page), and every chart has coloured marks in its own part of the screenshot.
///
/// The page is rendered as a contact sheet: the report's own file with its text hidden and its
/// charts stacked at their natural size from the top left, so chart `i` is the band of rows
/// below the charts before it. Skipped where chromium is absent, except in CI (`.ci/run`
/// installs it).
pub fn render_in_chromium(html: &std::path::Path) {
    let found = Command::new("chromium").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").is_err(), "CI must have chromium (.ci/run installs it)");
        eprintln!("chromium not found: the render check of {} is skipped", html.display());
        return;
    }
    let page = std::fs::read_to_string(html).unwrap();
    let charts = charts_of(&page);
    assert!(!charts.is_empty(), "{}: no chart", html.display());
    let sheet_css = "<style>body{margin:0!important;max-width:none!important}body>*:not(svg){display:none!important}\
                     svg.chart{margin:0!important;border:0!important;max-width:none!important}</style></head>";
    let sheet = html.with_extension("sheet.html");
    std::fs::write(&sheet, page.replacen("</head>", sheet_css, 1)).unwrap();
    let png_path = html.with_extension("png");
    let netlog = html.with_extension("netlog.json");
    let width = charts.iter().map(|c| c.1).max().unwrap();
    let height: u32 = charts.iter().map(|c| c.2).sum();
    let o = Command::new("timeout")
        .args(["120", "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
        .args(["--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .args(["--force-device-scale-factor=1", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(format!("file://{}", sheet.display()))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{}: chromium failed: {log}", html.display());
    for l in log.lines() {
        assert!(!l.contains(":CONSOLE") && !l.contains("net::ERR_"), "{}: {l}", html.display());
    }
    let external = page_requests(&std::fs::read_to_string(&netlog).expect("chromium's net log"));
    assert!(external.is_empty(), "{}: the page asked the network for {external:?}", html.display());
    let (w, h, rgb) = decode_png(&png_path);
    assert!(w >= width && h >= height, "{}: a {w}x{h} screenshot for {width}x{height} of charts", html.display());
    let mut top = 0;
    for (title, cw, ch, swatches) in &charts {
        let marks = saturated_pixels(&rgb, w, 0, top, *cw, top + ch);
        // A legend swatch is 10 x 10 coloured pixels; what is left must be data (one point of
        // a scatter is about 28).
        let data = marks.saturating_sub(100 * swatches);
        assert!(data >= 20, "{}: the chart {title:?} shows {data} coloured pixels of data", html.display());
        top += ch;
    }
    for f in [sheet, netlog, png_path] {
        let _ = std::fs::remove_file(f);
    }
}

/// Each `<svg class="chart">` of a report: its title, width, height and legend swatches.
fn charts_of(page: &str) -> Vec<(String, u32, u32, usize)> {
    let attr = |tag: &str, name: &str| -> u32 {
        let at = tag.find(&format!(" {name}=\"")).unwrap_or_else(|| panic!("a chart without {name}: {tag}"));
        let v = &tag[at + name.len() + 3..];
        v[..v.find('"').unwrap()].parse::<f64>().unwrap().ceil() as u32
    };
    page.split("<svg ")
        .skip(1)
        .map(|s| {
            let tag = &s[..s.find('>').unwrap()];
            let body = &s[..s.find("</svg>").expect("a closed svg")];
            let title = body.split("<title>").nth(1).and_then(|t| t.split("</title>").next()).unwrap_or("").to_string();
            (title, attr(tag, "width"), attr(tag, "height"), body.matches("width=\"10\" height=\"10\"").count())
        })
        .collect()
}

/// URLs chromium fetched for the page (not for itself: its updater and sign-in run in the
/// background even headless). A page's request carries the file:// page's isolation key.
fn page_requests(netlog: &str) -> Vec<String> {
    // Chromium may be stopped before it closes the JSON; the events are one per line.
    let mut urls = Vec::new();
    for line in netlog.lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line.trim_end_matches(',')) else { continue };
        let p = &e["params"];
        let (Some(url), Some(key)) = (p["url"].as_str(), p["network_isolation_key"].as_str()) else { continue };
        if key.contains("file://") && !url.starts_with("file:") && !url.starts_with("data:") {
            urls.push(url.to_string());
        }
    }
    urls.sort();
    urls.dedup();
    urls
}

/// The screenshot as width, height and RGB bytes.
fn decode_png(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let mut d = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).expect("a screenshot")));
    d.set_transformations(png::Transformations::normalize_to_color8());
    let mut r = d.read_info().expect("a PNG");
    let mut buf = vec![0; r.output_buffer_size().expect("a PNG's size")];
    let info = r.next_frame(&mut buf).expect("a PNG frame");
    let n = info.color_type.samples();
    let rgb = buf[..info.buffer_size()].chunks(n).flat_map(|p| [p[0], p[1.min(n - 1)], p[2.min(n - 1)]]).collect();
    (info.width, info.height, rgb)
}

/// Pixels in the box whose colour is clearly not a grey (text, axes and grid are greys).
fn saturated_pixels(rgb: &[u8], w: u32, x0: u32, y0: u32, x1: u32, y1: u32) -> usize {
    let mut n = 0;
    for y in y0..y1 {
        for x in x0..x1.min(w) {
            let i = 3 * (y as usize * w as usize + x as usize);
            let Some(p) = rgb.get(i..i + 3) else { return n };
            let (hi, lo) = (p.iter().max().unwrap(), p.iter().min().unwrap());
            if hi - lo > 40 {
                n += 1;
            }
        }
    }
    n
}
