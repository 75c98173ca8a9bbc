//! `[[job]]` tables and `[schedule]` as written: the jobs `meshway schedule` places on a
//! fabric. A job is a training step (the keys of a `kind = "training"` workload) or a named
//! communication profile, repeated for `iterations` (or for `duration` when run alone).

use crate::workload_config::{Positive, Whole, WorkloadConfig, WorkloadKind};
use meshway_units::{Nanos, SimTime};
use serde::{Deserialize, Serialize};

/// One `[[job]]` table (also one row of a `--jobs` CSV or JSON file).
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct JobConfig {
    /// Name in reports (default "job-N").
    pub name: Option<String>,
    /// When the job is submitted ("2h"; default 0).
    pub arrival: Option<SimTime>,
    /// GPUs the job needs: at most one host's, or whole hosts.
    pub gpus: Option<Whole>,
    /// A built-in communication profile (see `meshway schedule --help`) in place of, or as
    /// defaults for, the training keys.
    pub profile: Option<String>,
    /// Training steps to run.
    pub iterations: Option<Whole>,
    /// Or: how long the job runs when alone on the fabric (iterations follow from its
    /// simulated step time).
    pub duration: Option<Nanos>,
    /// Higher runs first (default 0).
    pub priority: Option<i64>,
    /// An existing placement to score: host names, or a Slurm host list ("node[001-004]").
    pub hosts: Option<HostsConfig>,
    /// Training keys, as in a `kind = "training"` workload.
    pub parameters: Option<Positive>,
    pub layers: Option<Whole>,
    pub hidden: Option<Whole>,
    pub sequence: Option<Whole>,
    pub micro_batch: Option<Whole>,
    pub global_batch: Option<Whole>,
    pub tp: Option<Whole>,
    pub pp: Option<Whole>,
    pub ep: Option<Whole>,
    pub top_k: Option<Whole>,
    pub order: Option<String>,
    pub gpu: Option<String>,
    pub efficiency: Option<Positive>,
    pub grad_bytes: Option<Whole>,
    pub channels: Option<Whole>,
}

/// The hosts of an existing placement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum HostsConfig {
    /// A Slurm host list expression, e.g. "node[001-004,007]".
    List(String),
    /// Host names.
    Names(Vec<String>),
}

/// `[schedule]`: defaults for `meshway schedule`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Placement policies to compare (default: all).
    pub policies: Option<Vec<String>>,
    /// Backfill: "easy" (default) or "none".
    pub backfill: Option<String>,
    /// Host names in exports: a prefix and zero-padded number ("node" gives node001) or
    /// "fabric" for the fabric's own names (default "node").
    pub host_prefix: Option<String>,
}

impl JobConfig {
    /// The training keys of this job as a training workload.
    pub fn training(&self) -> WorkloadConfig {
        WorkloadConfig {
            kind: WorkloadKind::Training,
            name: self.name.clone(),
            start: None,
            size: None,
            group: None,
            ranks: None,
            op: None,
            algorithm: None,
            protocol: None,
            channels: self.channels,
            model: None,
            sweep_from: None,
            sweep_to: None,
            flows: None,
            senders: None,
            receiver: None,
            file: None,
            parameters: self.parameters,
            layers: self.layers,
            hidden: self.hidden,
            sequence: self.sequence,
            micro_batch: self.micro_batch,
            global_batch: self.global_batch,
            tp: self.tp,
            pp: self.pp,
            dp: None,
            ep: self.ep,
            top_k: self.top_k,
            order: self.order.clone(),
            gpu: self.gpu.clone(),
            efficiency: self.efficiency,
            grad_bytes: self.grad_bytes,
            dp_algorithm: None,
        }
    }
}
