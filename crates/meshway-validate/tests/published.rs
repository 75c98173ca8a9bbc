//! The repository's validation set (validation/collectives) against the model: every row
//! maps to a setup or an exclusion, and the groups meshway claims stay within their bounds.

use meshway_fabric::Catalog;

fn report() -> meshway_validate::ValidationReport {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../validation/collectives");
    let rows = std::fs::read_to_string(format!("{dir}/nccl-tests.csv")).unwrap();
    let setups = std::fs::read_to_string(format!("{dir}/setups.toml")).unwrap();
    meshway_validate::run(&rows, "nccl-tests.csv", &setups, "setups.toml", &Catalog::builtin(), &mut |_, _| {}).unwrap()
}

#[test]
fn every_row_is_run_or_excluded_with_a_reason() {
    let r = report();
    assert!(r.rows.len() >= 20, "{} rows run", r.rows.len());
    assert_eq!(r.rows.len() + r.skipped.len(), 142, "every published row is accounted for");
    assert!(r.skipped.iter().all(|s| !s.why.is_empty()));
    // Rows more than 25% off say why.
    for x in &r.rows {
        assert_eq!(x.why.is_some(), x.error.abs() > meshway_validate::OUTSIDE, "{}", x.id);
    }
}

#[test]
fn large_all_reduce_across_hosts_is_within_the_target() {
    // The target of issue 11 (median |error| <= 10%, max <= 25%) on the group the model is
    // built for today: large all-reduces on InfiniBand across hosts.
    let r = report();
    let g = r
        .groups
        .iter()
        .find(|g| g.op == "all-reduce" && g.size_band == ">16MiB" && g.scale == "multi-host")
        .expect("the group has rows");
    assert!(g.rows >= 4, "{g:?}");
    assert!(g.median_abs_error <= 0.10, "{g:?}");
    assert!(g.max_abs_error <= 0.25, "{g:?}");
}
