//! Text output of `meshway validate`.

use crate::format::{pct, pct_signed};
use crate::table::Table;
use meshway_units::Bytes;
use meshway_validate::ValidationReport;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `meshway validate`: each row (published, meshway, error, why when outside), the groups
/// by operation, size band and scale, and the rows not run with the reason.
pub fn validate_text(r: &ValidationReport) -> String {
    let mut o = String::new();
    let mut t = Table::new(&["row", "op", "GPUs", "size", "algorithm (NCCL)", "published", "meshway", "error"]);
    for x in &r.rows {
        let algo = match &x.nccl_algorithm {
            Some(n) => format!("{} ({n})", x.algorithm),
            None => x.algorithm.clone(),
        };
        t.row(vec![
            x.id.clone(),
            x.op.clone(),
            x.gpus.to_string(),
            Bytes(x.size_bytes).to_string(),
            algo,
            format!("{:.2} GB/s", x.published_busbw_gbytes_per_s),
            format!("{:.2} GB/s", x.meshway_busbw_gbytes_per_s),
            pct_signed(x.error),
        ]);
    }
    let _ = writeln!(o, "Bus bandwidth, published (nccl-tests) against meshway");
    o.push_str(&t.render());
    let outside: Vec<_> = r.rows.iter().filter(|x| x.why.is_some()).collect();
    if !outside.is_empty() {
        let _ = writeln!(o, "\nOutside {}: why", pct(meshway_validate::OUTSIDE));
        for x in outside {
            let _ = writeln!(o, "  {} ({}): {}", x.id, pct_signed(x.error), x.why.as_deref().unwrap_or(""));
        }
    }
    let mut g = Table::new(&["group", "size", "scale", "rows", "median |error|", "max |error|"]);
    for x in &r.groups {
        g.row(vec![
            x.op.clone(),
            x.size_band.to_string(),
            x.scale.to_string(),
            x.rows.to_string(),
            pct(x.median_abs_error),
            pct(x.max_abs_error),
        ]);
    }
    let _ = writeln!(o, "\nBy group");
    o.push_str(&g.render());
    let _ = writeln!(
        o,
        "all {} rows: median |error| {}, max {}",
        r.rows.len(),
        pct(r.median_abs_error),
        pct(r.max_abs_error)
    );
    if !r.skipped.is_empty() {
        let mut by_why: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &r.skipped {
            *by_why.entry(s.why.as_str()).or_default() += 1;
        }
        let _ = writeln!(o, "\nNot run ({} rows)", r.skipped.len());
        for (why, n) in by_why {
            let _ = writeln!(o, "  {n:>3}  {why}");
        }
    }
    o
}
