//! Published reference designs against `meshway plan`: each design in `plan/designs.toml`
//! is a scenario plus the counts its source publishes (switches per tier, links per class,
//! GPUs, hosts, NVLink trays, ports, oversubscription), each row cited. A row matches when
//! the plan gives the published figure exactly (ratios within 0.5%); a row where meshway
//! deliberately plans otherwise says why in `differs`, and still reports both figures.

use crate::ValidateError;
use meshway_fabric::plan::FabricReport;
use meshway_fabric::{analyze, Catalog, Scenario};
use serde::{Deserialize, Serialize};

/// `plan/designs.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DesignsFile {
    #[serde(default)]
    pub design: Vec<DesignConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DesignConfig {
    pub name: String,
    pub title: String,
    /// Where the published figures come from (URL and table).
    pub source: String,
    /// The design as a meshway scenario (TOML).
    pub scenario: String,
    pub row: Vec<RowConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RowConfig {
    /// What is counted: see [`QUANTITIES`].
    pub quantity: String,
    pub published: f64,
    /// Where in the source (table, section), or how the figure is derived from stated ones.
    pub cite: String,
    /// Why meshway's figure deliberately differs (absent: it must match).
    pub differs: Option<String>,
}

/// The quantities a row may name (`<tier>` is a tier name such as leaf, spine, core,
/// access; `<class>` a link class such as nic, leaf-spine, spine-core; `<item>` a bill of
/// materials line).
pub const QUANTITIES: &[&str] = &[
    "gpus",
    "hosts",
    "management-ports",
    "host-cables",
    "switches",
    "switches.<tier>",
    "links.<class>",
    "ports-used.<tier>",
    "ports-free.<tier>",
    "oversubscription.<tier>",
    "groups",
    "group-gpus",
    "scale-up.domains",
    "scale-up.switch-trays",
    "scale-up.nvlink-links",
    "bom.cables",
    "bom.switch-modules",
    "bom.host-modules",
    "bom.<item>",
];

#[derive(Debug, Clone, Serialize)]
pub struct PlanRow {
    pub design: String,
    pub quantity: String,
    pub published: f64,
    pub planned: Option<f64>,
    /// "match", "differs" (explained) or "mismatch".
    pub status: String,
    pub cite: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub differs: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanDesign {
    pub name: String,
    pub title: String,
    pub source: String,
    pub rows: usize,
    pub matched: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanValidation {
    pub designs: Vec<PlanDesign>,
    pub rows: Vec<PlanRow>,
    pub matched: usize,
    pub differs: usize,
    pub mismatched: usize,
}

/// The planned value of `quantity`, or None when the plan has no such thing.
pub fn quantity(r: &FabricReport, q: &str) -> Option<f64> {
    let tier = |name: &str| r.tiers.iter().find(|t| t.name == name);
    let (head, arg) = q.split_once('.').unwrap_or((q, ""));
    Some(match (head, arg) {
        ("gpus", "") => r.gpus as f64,
        ("hosts", "") => r.hosts as f64,
        ("management-ports", "") => r.management_ports as f64,
        // Host-facing leaf cables: GPU links and management ports.
        ("host-cables", "") => (r.links.iter().find(|l| l.class == "nic")?.count + r.management_ports) as f64,
        ("switches", "") => r.switches as f64,
        ("switches", t) => tier(t)?.switches as f64,
        ("links", c) => r.links.iter().find(|l| l.class == c)?.count as f64,
        ("ports-used", t) => tier(t)?.ports_used as f64,
        ("ports-free", t) => tier(t)?.ports_free as f64,
        ("oversubscription", t) => tier(t)?.oversubscription?,
        ("groups", "") => r.groups.count as f64,
        ("group-gpus", "") => r.groups.gpus_max as f64,
        ("scale-up", "domains") => r.scale_up.as_ref()?.domains as f64,
        ("scale-up", "switch-trays") => r.scale_up.as_ref()?.switch_trays as f64,
        ("scale-up", "nvlink-links") => r.scale_up.as_ref()?.nvlink_links as f64,
        ("bom", "cables") => r.bom.cables as f64,
        ("bom", "switch-modules") => r.bom.switch_modules as f64,
        ("bom", "host-modules") => r.bom.host_modules as f64,
        ("bom", item) => r.bom.lines.iter().filter(|l| l.item == item).map(|l| l.count).sum::<u64>() as f64,
        _ => return None,
    })
}

fn known(q: &str) -> bool {
    let (head, arg) = q.split_once('.').unwrap_or((q, ""));
    QUANTITIES.iter().any(|k| {
        let (kh, ka) = k.split_once('.').unwrap_or((k, ""));
        kh == head && (ka == arg || (ka.starts_with('<') && !arg.is_empty()))
    })
}

/// Plans every design of `text` (the designs file, named `file` in messages) and compares.
pub fn run(text: &str, file: &str, cat: &Catalog) -> Result<PlanValidation, ValidateError> {
    let d: DesignsFile = meshway_units::units_required(|| toml::from_str(text))
        .map_err(|e| ValidateError::Setups(meshway_fabric::error::locate_toml_error(file, text, &e)))?;
    if d.design.is_empty() {
        return Err(ValidateError::Csv {
            file: file.into(),
            line: 1,
            message: "no [[design]] tables: an empty set checks nothing".into(),
        });
    }
    // A design given twice counted its rows twice (109 rows, 106 matching, for 101 and 98).
    for (i, x) in d.design.iter().enumerate() {
        if d.design[..i].iter().any(|y| y.name == x.name) {
            let ctx = meshway_fabric::scenario::Ctx::new(file, text, "design", i, &format!("design[{}]", i + 1));
            return Err(ValidateError::Setups(
                ctx.invalid("name", format!("expected a name no other [[design]] has, got {:?} again", x.name)),
            ));
        }
    }
    let mut rows = Vec::new();
    let mut designs = Vec::new();
    for design in &d.design {
        let origin = format!("{file} (design {:?}, scenario)", design.name);
        let sc = Scenario::parse(&design.scenario, &origin)?;
        let f = sc.build(cat)?;
        let tr = sc.transport(cat)?;
        let report = analyze(&f, cat, &tr);
        let mut matched = 0;
        for row in &design.row {
            if !known(&row.quantity) {
                return Err(ValidateError::Unmatched {
                    file: file.into(),
                    row: format!(
                        "design {:?}: unknown quantity {:?}, expected one of {}",
                        design.name,
                        row.quantity,
                        QUANTITIES.join(", ")
                    ),
                });
            }
            let planned = quantity(&report, &row.quantity);
            let equal = planned.is_some_and(|p| {
                if row.quantity.starts_with("oversubscription") {
                    (p / row.published - 1.0).abs() <= 0.005
                } else {
                    p == row.published
                }
            });
            let status = match (equal, &row.differs) {
                (true, _) => "match",
                (false, Some(_)) => "differs",
                (false, None) => "mismatch",
            };
            matched += usize::from(equal);
            rows.push(PlanRow {
                design: design.name.clone(),
                quantity: row.quantity.clone(),
                published: row.published,
                planned,
                status: status.to_string(),
                cite: row.cite.clone(),
                differs: row.differs.clone(),
            });
        }
        designs.push(PlanDesign {
            name: design.name.clone(),
            title: design.title.clone(),
            source: design.source.clone(),
            rows: design.row.len(),
            matched,
        });
    }
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
    let (matched, differs, mismatched) = (count("match"), count("differs"), count("mismatch"));
    Ok(PlanValidation { designs, rows, matched, differs, mismatched })
}
