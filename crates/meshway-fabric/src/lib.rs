//! meshway-fabric: the scenario model, fabric builders, routing, the catalog of parts and the
//! planner's analyses. Pure: no I/O, no clock; callers pass text in and get values out.

pub mod build;
pub mod catalog;
pub mod config;
pub mod error;
pub mod infer_config;
pub mod job_config;
pub mod layout;
pub mod maxflow;
pub mod model;
pub mod plan;
pub mod routing;
pub mod scenario;
pub mod schema;
pub mod workload_config;

pub use catalog::Catalog;
pub use error::FabricError;
pub use model::{Fabric, LinkClass, LinkId, NodeId, NodeKind, ScaleUp};
pub use plan::{analyze, FabricReport};
pub use scenario::{Scenario, Transport};

/// Parses, builds and analyzes a scenario in one call.
pub fn plan_text(text: &str, file: &str, catalog: &Catalog) -> Result<FabricReport, FabricError> {
    let sc = Scenario::parse(text, file)?;
    let fabric = sc.build(catalog)?;
    let tr = sc.transport(catalog)?;
    Ok(analyze(&fabric, catalog, &tr))
}
