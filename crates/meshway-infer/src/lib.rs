//! meshway-infer: inference traffic over a network of sites. Users in regions send requests
//! that travel to a model server and stream tokens back; this crate simulates that at the
//! request level ([`sim`]) and chooses how many GPUs to place at each site ([`place`]).
//! Pure: no I/O, no clock, a seeded generator of its own ([`rng`]).

pub mod place;
pub mod rng;
pub mod sim;
pub mod spec;

pub use place::{place, PlaceOptions, PlacementReport};
pub use sim::{simulate, InferReport, Run};
pub use spec::{from_scenario, InferSpec, Policy};

use meshway_fabric::{Catalog, FabricError, Scenario};

/// Parses and validates an inference scenario.
pub fn spec_from_text(text: &str, file: &str, cat: &Catalog) -> Result<InferSpec, FabricError> {
    let sc = Scenario::parse(text, file)?;
    from_scenario(&sc, cat)
}
