//! Bounds on what a scenario may give, shared by the workload parsers (`simulate`,
//! `training`) and the scheduler.

/// The latest time a scenario may give a workload's start or a failure: 365 days (an
/// assumption far beyond any simulated run), so that sums of times stay inside the clock.
pub const MAX_SCENARIO_TIME_NS: u64 = 365 * 86_400 * 1_000_000_000;

/// The largest size a workload may give (`size`, `sweep-to`): 1 PiB, an assumption far above
/// any collective or flow (nccl-tests sweeps end at 16 GiB; a 405B model's FP32 gradients are
/// 1.6 TB), so that sums over millions of flows stay inside 64 bits.
pub const MAX_WORKLOAD_BYTES: u64 = 1 << 50;
