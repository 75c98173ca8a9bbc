//! The JSON Schema of the scenario file, generated from the typed configs so it cannot drift
//! from what the parser accepts. Written to `docs/scenario.schema.json`; editors that read
//! JSON Schema for TOML (Taplo, "Even Better TOML") validate a scenario with a first line
//! `#:schema ./docs/scenario.schema.json`.

use crate::config::ScenarioConfig;

/// The schema as pretty-printed JSON with a trailing newline.
pub fn scenario_schema() -> String {
    let mut schema = schemars::schema_for!(ScenarioConfig);
    schema.insert("title".into(), "meshway scenario".into());
    schema.insert(
        "description".into(),
        "A meshway scenario file (TOML): a fabric or sites joined by DCI spans, a transport, workloads, failures and inference settings. Keys are kebab-case; sizes, rates, times and lengths take human units (\"1GiB\", \"400Gbps\", \"2ms\", \"100km\").".into(),
    );
    let mut value = schema.to_value();
    drop_null(&mut value);
    let mut out = serde_json::to_string_pretty(&value).unwrap_or_default();
    out.push('\n');
    out
}

/// TOML has no null (a value is left out by leaving out its key), so the `null` that serde's
/// `Option` adds to every optional value is dropped: `"type": ["string", "null"]` becomes
/// `"type": "string"`, and `anyOf: [X, {"type": "null"}]` becomes X.
fn drop_null(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(any)) = map.get_mut("anyOf") {
                any.retain(|s| s.get("type").is_none_or(|t| t != "null"));
                if any.len() == 1 {
                    let only = any.remove(0);
                    map.remove("anyOf");
                    if let Value::Object(inner) = only {
                        for (k, x) in inner {
                            map.entry(k).or_insert(x);
                        }
                    }
                }
            }
            map.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_every_table_and_the_workload_kinds() {
        let s: serde_json::Value = serde_json::from_str(&scenario_schema()).unwrap();
        let props = s["properties"].as_object().unwrap();
        for k in ["fabric", "site", "dci", "transport", "workload", "failure", "inference", "model", "region"] {
            assert!(props.contains_key(k), "missing {k}");
        }
        let text = scenario_schema();
        for kind in ["collective", "permutation", "all-to-all", "training", "leaf-spine", "rail-optimized"] {
            assert!(text.contains(&format!("\"{kind}\"")), "missing {kind}");
        }
        assert_eq!(s["additionalProperties"], serde_json::Value::Bool(false), "unknown keys are refused");
        assert!(!text.contains("\"null\""), "TOML has no null");
    }
}
