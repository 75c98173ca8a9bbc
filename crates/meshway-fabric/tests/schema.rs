//! `docs/scenario.schema.json` is generated from the types; this fails when it is stale.
//! Regenerate with `MESHWAY_UPDATE_SCHEMA=1 cargo test -p meshway-fabric --test schema`
//! (or `meshway schema > docs/scenario.schema.json`).

#[test]
fn docs_schema_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/scenario.schema.json");
    let fresh = meshway_fabric::schema::scenario_schema();
    if std::env::var_os("MESHWAY_UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &fresh).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == fresh,
        "docs/scenario.schema.json is out of date: run MESHWAY_UPDATE_SCHEMA=1 cargo test -p meshway-fabric --test schema"
    );
}
