//! meshway-testbed: a scenario's fabric built from Linux network namespaces, its workloads
//! run as real TCP, and the measurements compared with the simulator.
//!
//! Layout: one namespace per GPU (its host) and per switch, named `PREFIX-node`; one veth
//! pair per link (`PREFIXNa` / `PREFIXNb` for link N) with a /31 from 10.128.0.0/9; every GPU
//! also has a /32 from 10.64.0.0/10 on its first NIC. Switches forward, with one route per GPU
//! whose next hops are the fabric's equal-cost next hops (multipath, L4 hash:
//! `fib_multipath_hash_policy = 1`), so the kernel hashes flows onto paths as an ECMP switch
//! does. Each veth end has a `tbf` qdisc at the link's rate divided by the scale.
//!
//! [`plan`] is pure (unit-tested without root); [`apply`] creates and removes, and runs flows.

pub mod apply;
mod error;
pub mod plan;

pub use apply::{down, flow_worker, load, run, up, verify, RunProgress, Timeout, UpSummary};
pub use error::TestbedError;
pub use plan::{
    check_prefix, expected_phase_us, parse_scale, per_workload, plan, testbed_wire, Compared, FlowRun, Plan, State,
    WorkloadCompared,
};
