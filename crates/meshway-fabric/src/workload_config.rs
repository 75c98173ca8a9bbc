//! `[[workload]]` and `[[failure]]` as written. Like [`crate::config`], these structs only
//! describe the syntax: serde checks every key and value type (with the file, line and key of
//! a mistake), and `meshway-sim` validates them against the fabric (ranks, groups, sizes that
//! fit) into the engine's programs.
//!
//! A workload is one flat table with a `kind` rather than a serde internally tagged enum:
//! serde buffers a tagged enum's table before choosing the variant, and that buffering loses
//! the source position of every value inside it, so a bad `size` could no longer be reported
//! with its line and key. [`WorkloadConfig::check_keys`] then refuses keys that the chosen
//! kind does not read, naming the kinds that do.

use meshway_units::{Bytes, Nanos, SimTime};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a `[[workload]]` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// An NCCL-style collective (`op`, `algorithm`, `size`, optionally a size sweep).
    Collective,
    /// Every GPU sends `size` to one other, a seeded derangement.
    Permutation,
    /// `flows` flows of `size` between uniformly chosen pairs.
    Uniform,
    /// `senders` GPUs send `size` to one `receiver`.
    Incast,
    /// Every GPU sends `size` to every other, as direct flows.
    AllToAll,
    /// A flow list from a CSV or JSON `file`.
    Flows,
    /// A training step (3D parallelism) from the model's shape.
    Training,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 7] = [
        WorkloadKind::Collective,
        WorkloadKind::Permutation,
        WorkloadKind::Uniform,
        WorkloadKind::Incast,
        WorkloadKind::AllToAll,
        WorkloadKind::Flows,
        WorkloadKind::Training,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Collective => "collective",
            WorkloadKind::Permutation => "permutation",
            WorkloadKind::Uniform => "uniform",
            WorkloadKind::Incast => "incast",
            WorkloadKind::AllToAll => "all-to-all",
            WorkloadKind::Flows => "flows",
            WorkloadKind::Training => "training",
        }
    }

    /// The keys a workload of this kind reads (besides `kind`, `name` and `start`).
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Collective => &[
                "op",
                "algorithm",
                "protocol",
                "size",
                "group",
                "ranks",
                "channels",
                "model",
                "sweep-from",
                "sweep-to",
            ],
            WorkloadKind::Permutation | WorkloadKind::AllToAll => &["size", "group", "ranks"],
            WorkloadKind::Uniform => &["size", "group", "ranks", "flows"],
            WorkloadKind::Incast => &["size", "group", "ranks", "senders", "receiver"],
            WorkloadKind::Flows => &["file"],
            WorkloadKind::Training => &[
                "parameters",
                "layers",
                "hidden",
                "sequence",
                "micro-batch",
                "global-batch",
                "tp",
                "pp",
                "dp",
                "ep",
                "top-k",
                "order",
                "gpu",
                "efficiency",
                "grad-bytes",
                "channels",
                "dp-algorithm",
            ],
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A collective operation, as nccl-tests names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OpConfig {
    AllReduce,
    AllGather,
    ReduceScatter,
    AllToAll,
    Broadcast,
    SendRecv,
}

impl OpConfig {
    pub fn name(self) -> &'static str {
        match self {
            OpConfig::AllReduce => "all-reduce",
            OpConfig::AllGather => "all-gather",
            OpConfig::ReduceScatter => "reduce-scatter",
            OpConfig::AllToAll => "all-to-all",
            OpConfig::Broadcast => "broadcast",
            OpConfig::SendRecv => "send-recv",
        }
    }

    /// nccl-tests' bus bandwidth factor: busbw = algbw x factor.
    pub fn busbw_factor(self, n: usize) -> f64 {
        let n = n.max(1) as f64;
        match self {
            OpConfig::AllReduce => 2.0 * (n - 1.0) / n,
            OpConfig::AllGather | OpConfig::ReduceScatter | OpConfig::AllToAll => (n - 1.0) / n,
            OpConfig::Broadcast | OpConfig::SendRecv => 1.0,
        }
    }
}

/// How a collective moves its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AlgorithmConfig {
    /// The fastest of the algorithms NCCL would weigh for the operation on this fabric,
    /// each simulated alone (the default).
    Auto,
    Ring,
    Tree,
    HalvingDoubling,
    Hierarchical,
    SiteHierarchical,
    Direct,
    /// NVLink SHARP: the NVSwitch reduces (one host; across hosts with SHARP switches).
    Nvls,
    /// NVLS inside each host, a double binary tree across hosts.
    NvlsTree,
    /// In-network reduction in SHARP switches across hosts (NCCL's CollNet).
    Collnet,
}

/// The NCCL protocol of a collective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProtocolConfig {
    /// The fastest of simple, ll128 and ll for the size, picked with the algorithm (the
    /// default).
    Auto,
    /// Payload only; the highest latency per step.
    Simple,
    /// 120 of every 128 bytes are payload; lower latency.
    Ll128,
    /// Half the bytes are payload; the lowest latency.
    Ll,
}

impl ProtocolConfig {
    /// The catalog name; `None` for auto.
    pub fn name(self) -> Option<&'static str> {
        match self {
            ProtocolConfig::Auto => None,
            ProtocolConfig::Simple => Some("simple"),
            ProtocolConfig::Ll128 => Some("ll128"),
            ProtocolConfig::Ll => Some("ll"),
        }
    }
}

/// Granularity of a collective's simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CollModelConfig {
    /// Steps for small collectives, steady state for large ones.
    Auto,
    /// Every step of the algorithm as its own flows.
    Steps,
    /// One flow per channel and neighbour carrying the whole volume.
    Steady,
}

/// The data-parallel gradient all-reduce of a training workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DpAlgorithmConfig {
    /// What NCCL's tuner would pick for one group alone (ring, double binary tree, NVLS,
    /// NVLS-tree, CollNet as the hardware allows), as a collective workload's `auto`.
    Auto,
    Ring,
    /// NCCL's double binary tree.
    Tree,
    /// By site: reduce-scatter in each site, all-reduce across, all-gather in each site.
    SiteHierarchical,
}

/// A GPU named or numbered in `ranks = [...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RankRef {
    /// A rank number, 0-based.
    Index(u64),
    /// A GPU name such as "gpu-12".
    Name(String),
}

impl fmt::Display for RankRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RankRef::Index(i) => write!(f, "{i}"),
            RankRef::Name(n) => write!(f, "{n:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for RankRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RankRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a GPU name such as \"gpu-3\" or a rank number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RankRef, E> {
                Ok(RankRef::Name(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RankRef, E> {
                Ok(RankRef::Index(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RankRef, E> {
                u64::try_from(v).map(RankRef::Index).map_err(|_| E::custom(format!("rank {v} is negative")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A whole number written as an integer, an integral float (`70e9`) or a string of either
/// (`"8_192"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Whole(pub u64);

/// A positive finite number written as a number or a string (`"1.3e9"`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Positive(pub f64);

// The schemas say what the parsers below accept: a number, or a string that holds one (its
// value is checked when the file is read, as a schema cannot parse "8_192").
impl schemars::JsonSchema for Whole {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Whole".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "a whole number of 0 or more: 8, 70e9, or a string of one (\"8_192\")",
            "anyOf": [{ "type": "integer", "minimum": 0 }, { "type": "string", "examples": ["8_192"] }]
        })
    }
}

impl schemars::JsonSchema for Positive {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Positive".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "a number above 0: 1.3e9, or a string of one (\"1.3e9\")",
            "anyOf": [{ "type": "number", "exclusiveMinimum": 0 }, { "type": "string", "examples": ["1.3e9"] }]
        })
    }
}

fn number_from_str(s: &str) -> Option<f64> {
    s.replace('_', "").trim().parse::<f64>().ok()
}

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Positive;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive number such as 70e9")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Positive, E> {
                if v > 0.0 && v.is_finite() {
                    Ok(Positive(v))
                } else {
                    Err(E::custom(format!("expected a positive number, got {}", meshway_units::shown(v))))
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Positive, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Positive, E> {
                self.visit_f64(v as f64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Positive, E> {
                match number_from_str(v) {
                    Some(x) => self.visit_f64(x),
                    None => Err(E::custom(format!("expected a positive number, got {v:?}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Whole;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number such as 8")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Whole, E> {
                Ok(Whole(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Whole, E> {
                u64::try_from(v)
                    .map(Whole)
                    .map_err(|_| E::custom(format!("expected a whole number of 0 or more, got {v}")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Whole, E> {
                if v >= 0.0 && v.fract() == 0.0 && v < 1e15 {
                    Ok(Whole(v as u64))
                } else {
                    Err(E::custom(format!("expected a whole number, got {}", meshway_units::shown(v))))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Whole, E> {
                match number_from_str(v) {
                    Some(x) => self.visit_f64(x),
                    None => Err(E::custom(format!("expected a whole number, got {v:?}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One `[[workload]]` table. Which keys apply depends on `kind`
/// ([`WorkloadKind::keys`]); [`WorkloadConfig::check_keys`] refuses the others.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WorkloadConfig {
    pub kind: WorkloadKind,
    /// Name in reports (default: kind and position, e.g. "collective-1").
    pub name: Option<String>,
    /// A fixed start time ("2ms"); by default a workload starts when the previous completes.
    pub start: Option<Nanos>,
    /// Bytes per rank (collectives: the buffer nccl-tests calls size; flows: each flow).
    pub size: Option<Bytes>,
    /// The GPUs taking part: "all" (default), "hosts" (one GPU per host) or a fabric group.
    pub group: Option<String>,
    /// The GPUs taking part, by name or rank number (instead of `group`).
    pub ranks: Option<Vec<RankRef>>,
    /// Collective: the operation (default all-reduce).
    pub op: Option<OpConfig>,
    /// Collective: the algorithm (default auto: the fastest of NCCL's candidates).
    pub algorithm: Option<AlgorithmConfig>,
    /// Collective: the NCCL protocol (default auto: the fastest for the size).
    pub protocol: Option<ProtocolConfig>,
    /// Collective, training: channels (rings) per collective (default: the catalog's).
    pub channels: Option<Whole>,
    /// Collective: simulation granularity (default auto).
    pub model: Option<CollModelConfig>,
    /// Collective: sweep sizes by powers of two from `sweep-from` to `sweep-to`.
    pub sweep_from: Option<Bytes>,
    pub sweep_to: Option<Bytes>,
    /// Uniform: number of flows (default: one per GPU).
    pub flows: Option<Whole>,
    /// Incast: number of senders (default: every GPU but the receiver).
    pub senders: Option<Whole>,
    /// Incast: the receiving GPU by name (default: the first rank).
    pub receiver: Option<String>,
    /// Flows: a CSV or JSON flow list, relative to the scenario file.
    pub file: Option<String>,
    /// Training: parameters of the model (e.g. 70e9).
    pub parameters: Option<Positive>,
    /// Training: transformer layers, hidden size, sequence length.
    pub layers: Option<Whole>,
    pub hidden: Option<Whole>,
    pub sequence: Option<Whole>,
    /// Training: sequences per micro-batch (default 1) and per step.
    pub micro_batch: Option<Whole>,
    pub global_batch: Option<Whole>,
    /// Training: tensor, pipeline, data and expert parallel degrees.
    pub tp: Option<Whole>,
    pub pp: Option<Whole>,
    pub dp: Option<Whole>,
    pub ep: Option<Whole>,
    /// Training: experts each token visits (mixture of experts; default 2).
    pub top_k: Option<Whole>,
    /// Training: rank order of the parallel dimensions, innermost first (default "tp,pp,dp").
    pub order: Option<String>,
    /// Training: GPU model from the catalog (default: the catalog's).
    pub gpu: Option<String>,
    /// Training: share of peak FLOP/s reached by compute kernels (default: the catalog's).
    pub efficiency: Option<Positive>,
    /// Training: bytes per gradient element (default 2).
    pub grad_bytes: Option<Whole>,
    /// Training: the DP gradient all-reduce (default auto: the tuner's pick).
    pub dp_algorithm: Option<DpAlgorithmConfig>,
}

impl WorkloadConfig {
    /// The keys given in this table besides `kind`, `name` and `start`.
    pub fn given_keys(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut add = |k: &'static str, present: bool| {
            if present {
                v.push(k);
            }
        };
        add("size", self.size.is_some());
        add("group", self.group.is_some());
        add("ranks", self.ranks.is_some());
        add("op", self.op.is_some());
        add("algorithm", self.algorithm.is_some());
        add("protocol", self.protocol.is_some());
        add("channels", self.channels.is_some());
        add("model", self.model.is_some());
        add("sweep-from", self.sweep_from.is_some());
        add("sweep-to", self.sweep_to.is_some());
        add("flows", self.flows.is_some());
        add("senders", self.senders.is_some());
        add("receiver", self.receiver.is_some());
        add("file", self.file.is_some());
        add("parameters", self.parameters.is_some());
        add("layers", self.layers.is_some());
        add("hidden", self.hidden.is_some());
        add("sequence", self.sequence.is_some());
        add("micro-batch", self.micro_batch.is_some());
        add("global-batch", self.global_batch.is_some());
        add("tp", self.tp.is_some());
        add("pp", self.pp.is_some());
        add("dp", self.dp.is_some());
        add("ep", self.ep.is_some());
        add("top-k", self.top_k.is_some());
        add("order", self.order.is_some());
        add("gpu", self.gpu.is_some());
        add("efficiency", self.efficiency.is_some());
        add("grad-bytes", self.grad_bytes.is_some());
        add("dp-algorithm", self.dp_algorithm.is_some());
        v
    }

    /// The first key that `kind` does not read, with a message naming the kinds that do.
    pub fn check_keys(&self) -> Result<(), (&'static str, String)> {
        let allowed = self.kind.keys();
        for k in self.given_keys() {
            if !allowed.contains(&k) {
                let users: Vec<&str> =
                    WorkloadKind::ALL.iter().filter(|w| w.keys().contains(&k)).map(|w| w.name()).collect();
                return Err((
                    k,
                    format!(
                        "does not apply to a {} workload (it is read by {} workloads); a {} workload reads {}",
                        self.kind,
                        users.join(", "),
                        self.kind,
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The name in reports.
    pub fn display_name(&self, nth: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("{}-{}", self.kind, nth + 1))
    }
}

/// One `[[failure]]` table: a link or a switch down at `at`, optionally up again.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FailureConfig {
    /// When it fails (default: at the start).
    pub at: Option<SimTime>,
    /// A link, "node-a:node-b" (every parallel link between them).
    pub link: Option<String>,
    /// A switch (every link of it).
    pub switch: Option<String>,
    /// When it comes back (after `at`), or
    pub until: Option<SimTime>,
    /// how long it stays down.
    pub duration: Option<Nanos>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_name_round_trips() {
        for k in WorkloadKind::ALL {
            let v: WorkloadConfig = toml::from_str(&format!("kind = \"{}\"", k.name())).unwrap();
            assert_eq!(v.kind, k);
        }
    }

    #[test]
    fn numbers_in_every_spelling() {
        let v: WorkloadConfig =
            toml::from_str("kind = \"training\"\nparameters = \"1.3e9\"\nlayers = 24.0\nhidden = \"2_048\"\ntp = 8")
                .unwrap();
        assert_eq!(v.parameters, Some(Positive(1.3e9)));
        assert_eq!(v.layers, Some(Whole(24)));
        assert_eq!(v.hidden, Some(Whole(2048)));
        assert_eq!(v.tp, Some(Whole(8)));
        assert!(toml::from_str::<WorkloadConfig>("kind = \"training\"\nlayers = 2.5").is_err());
        assert!(toml::from_str::<WorkloadConfig>("kind = \"training\"\nparameters = -1").is_err());
    }

    /// Whether `v` meets `schema`, for the keywords Whole's and Positive's schemas use.
    fn meets(schema: &serde_json::Value, v: &serde_json::Value) -> bool {
        if let Some(any) = schema.get("anyOf").and_then(|a| a.as_array()) {
            return any.iter().any(|s| meets(s, v));
        }
        let typed = match schema["type"].as_str() {
            Some("integer") => v.as_f64().is_some_and(|x| x.fract() == 0.0),
            Some("number") => v.is_number(),
            Some("string") => v.is_string(),
            other => panic!("unexpected type {other:?}"),
        };
        let x = v.as_f64();
        typed
            && schema.get("minimum").and_then(|m| m.as_f64()).is_none_or(|m| x.is_some_and(|x| x >= m))
            && schema.get("exclusiveMinimum").and_then(|m| m.as_f64()).is_none_or(|m| x.is_some_and(|x| x > m))
    }

    /// The schema says what the parser accepts: `channels = "4"` and `parameters = "1.3e9"`
    /// ran but failed the schema (integer, number), which took `parameters = 0` and -1,
    /// refused on reading. A number meets the schema exactly when it parses; every string
    /// that parses meets it (its value is checked on reading).
    #[test]
    fn the_schema_takes_what_the_parser_takes() {
        use serde_json::json;
        let whole = serde_json::to_value(schemars::schema_for!(Whole)).unwrap();
        let positive = serde_json::to_value(schemars::schema_for!(Positive)).unwrap();
        let values = [
            json!(0),
            json!(8),
            json!(24.0),
            json!(2.5),
            json!(-1),
            json!(-0.5),
            json!(1.3e9),
            json!("4"),
            json!("8_192"),
            json!("1.3e9"),
            json!("0"),
        ];
        let (mut wholes, mut positives) = (0, 0);
        for v in &values {
            let w = serde_json::from_value::<Whole>(v.clone()).is_ok();
            let p = serde_json::from_value::<Positive>(v.clone()).is_ok();
            wholes += usize::from(w);
            positives += usize::from(p);
            if v.is_number() {
                assert_eq!(meets(&whole, v), w, "Whole {v}");
                assert_eq!(meets(&positive, v), p, "Positive {v}");
            } else {
                assert!(meets(&whole, v) && meets(&positive, v), "{v}");
            }
        }
        // Whole: 0, 8, 24.0, 1.3e9, "4", "8_192", "1.3e9", "0"; Positive: 8, 24.0, 2.5, 1.3e9,
        // "4", "8_192", "1.3e9".
        assert_eq!((wholes, positives), (8, 7));
    }

    #[test]
    fn keys_of_another_kind_are_refused_naming_their_kind() {
        let v: WorkloadConfig = toml::from_str("kind = \"permutation\"\nsweep-from = \"1KiB\"").unwrap();
        let (k, m) = v.check_keys().unwrap_err();
        assert_eq!(k, "sweep-from");
        assert!(m.starts_with("does not apply to a permutation workload (it is read by collective workloads)"), "{m}");
        let v: WorkloadConfig = toml::from_str("kind = \"collective\"\nsize = \"1MiB\"\nchannels = 4").unwrap();
        assert!(v.check_keys().is_ok());
    }

    #[test]
    fn ranks_by_name_or_number() {
        let v: WorkloadConfig = toml::from_str("kind = \"collective\"\nranks = [0, \"gpu-3\"]").unwrap();
        assert_eq!(v.ranks, Some(vec![RankRef::Index(0), RankRef::Name("gpu-3".into())]));
    }
}
