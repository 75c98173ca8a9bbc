//! Every example's HTML report as a person sees it: rendered headless in chromium, with no
//! console message, no network request, and data in every chart (`common::render_in_chromium`).

mod common;
use common::*;

/// The reports each example is written for: its fabric's plan, its workloads simulated, its
/// serving sites served and placed, its sites trained across, its jobs scheduled. An example
/// none of these fit fails the test, so a new example gets a report checked too.
fn reports_of(name: &str, text: &str) -> Vec<Vec<String>> {
    let file = format!("examples/{name}.toml");
    let has = |table: &str| text.lines().any(|l| l.trim() == table);
    let mut runs: Vec<Vec<&str>> = Vec::new();
    if has("[fabric]") || has("[[site]]") && !has("[[model]]") {
        runs.push(vec!["plan"]);
    }
    if has("[[workload]]") {
        runs.push(vec!["simulate"]);
    }
    if has("[[workload]]") && has("[[site]]") {
        runs.push(vec!["multisite", "--distances", "0km,100km"]);
    }
    if has("[[model]]") {
        runs.push(vec!["infer", "--duration", "1min"]);
        runs.push(vec!["place", "--no-sim"]);
    }
    if has("[[job]]") {
        runs.push(vec!["schedule"]);
    }
    runs.into_iter()
        .map(|r| {
            let mut v = vec![r[0].to_string(), file.clone()];
            v.extend(r[1..].iter().map(|s| s.to_string()));
            v
        })
        .collect()
}

#[test]
fn every_examples_report_renders_with_data_in_every_chart() {
    let dir = tempdir("reports");
    let mut names: Vec<String> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".toml").map(str::to_string))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "{names:?}");
    let mut rendered = 0;
    for name in &names {
        let text = std::fs::read_to_string(root().join(format!("examples/{name}.toml"))).unwrap();
        let runs = reports_of(name, &text);
        assert!(!runs.is_empty(), "examples/{name}.toml: no verb draws a report for it");
        for args in runs {
            let out = dir.join(format!("{}-{name}.html", args[0]));
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            a.extend(["--html", out.to_str().unwrap()]);
            let o = meshway(&a);
            assert!(o.status.success(), "meshway {}: {}", a.join(" "), stderr(&o));
            render_in_chromium(&out);
            rendered += 1;
        }
    }
    assert!(rendered >= 25, "{rendered} reports");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The render check fails where a person would see something wrong: a request to the
/// network, a console error, a chart with nothing in it.
#[test]
fn the_render_check_catches_requests_console_errors_and_empty_charts() {
    let dir = tempdir("badreports");
    let chart = |inner: &str| {
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 300 200" width="300" height="200" class="chart"><title>t</title><rect width="300" height="200" fill="#fff"/>{inner}</svg>"##
        )
    };
    let data = r##"<path d="M 10 10 L 290 190" stroke="#0072B2" stroke-width="4"/>"##;
    let cases = [
        ("request", format!("{}<img src=\"http://127.0.0.1:9/x.png\">", chart(data)), "asked the network"),
        ("console", chart(&format!("{data}<path d=\"M 0 0 L x\"/>")), "CONSOLE"),
        (
            "empty",
            format!("{}{}", chart(data), chart("<line x1=\"0\" y1=\"100\" x2=\"300\" y2=\"100\" stroke=\"#888\"/>")),
            "coloured pixels",
        ),
    ];
    for (name, body, expect) in cases {
        let f = dir.join(format!("{name}.html"));
        std::fs::write(&f, format!("<!DOCTYPE html>\n<html><head><title>x</title></head><body>{body}</body></html>\n"))
            .unwrap();
        let r = std::panic::catch_unwind(|| render_in_chromium(&f));
        if std::process::Command::new("chromium").arg("--version").output().is_err() {
            continue; // skipped outside CI, as render_in_chromium says
        }
        let msg = r.expect_err(name);
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains(expect), "{name}: {msg}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
