//! meshway-validate: published measurements against meshway's model.
//!
//! A validation set is a directory holding, for collectives, `collectives/nccl-tests.csv`
//! (published nccl-tests results, one cited row each) and `collectives/setups.toml` (the
//! hardware of those rows as meshway fabrics, and the rows meshway cannot model yet, with
//! why). [`run`] simulates every modelled row as a collective on its setup's fabric, picks
//! the algorithm NCCL reported when the row says (else the fastest of the algorithms
//! meshway has for that operation, as a tuner would), and compares bus bandwidth.
//!
//! Pure: the caller reads the files and passes their text.

pub mod inference;
pub mod plan;

use meshway_fabric::config::{FabricConfig, ScenarioConfig, TransportConfig};
use meshway_fabric::workload_config::WorkloadConfig;
use meshway_fabric::{Catalog, FabricError, Scenario};
use meshway_sim::simulate::{simulate, Options, Setup, SimulateError};
use meshway_units::{Bytes, Nanos};
use serde::{Deserialize, Serialize};

/// Everything that stops a validation run (a row that cannot be modelled is not an error:
/// it is reported with the reason).
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("{file}:{line}: {message}")]
    Csv { file: String, line: u64, message: String },
    #[error(transparent)]
    Setups(#[from] FabricError),
    /// A setup that does not run for a row (its message is the simulator's, whole: it is
    /// not repeated as a cause).
    #[error("{file}{}: setup {setup:?}, for row {row}: {error}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Simulate { file: String, line: Option<usize>, setup: String, row: String, error: Box<SimulateError> },
    #[error("{file}: row {row} matches no [[setup]] and no [[excluded]] entry; add it to one")]
    Unmatched { file: String, row: String },
}

/// One published measurement, as `nccl-tests.csv` holds it (columns not listed are kept in
/// the file for readers and ignored here).
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    pub id: String,
    pub op: String,
    pub gpus: Option<u32>,
    pub gpus_per_host: Option<u32>,
    pub gpu: String,
    pub transport: Option<String>,
    pub size_bytes: Option<u64>,
    pub time_us: Option<f64>,
    pub busbw_gbytes_per_s: Option<f64>,
    pub nccl_algo: Option<String>,
    pub nccl_proto: Option<String>,
    pub read_as: String,
    pub source_url: String,
    /// The row's line in its file, for messages.
    #[serde(skip)]
    pub line: u64,
}

/// The largest message a row may give: 1 TiB (an assumption; nccl-tests tables stop at
/// 16-32 GiB, and the scenario reads a size as a 64-bit TOML integer).
const MAX_ROW_SIZE: u64 = 1 << 40;

/// `setups.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SetupsFile {
    #[serde(default)]
    pub setup: Vec<SetupConfig>,
    #[serde(default)]
    pub excluded: Vec<ExcludedConfig>,
    /// Why some rows that run stay outside the bound, where the evidence says (else the
    /// output gives the general pattern for their size and sign).
    #[serde(default)]
    pub known: Vec<KnownConfig>,
}

/// The hardware of some rows as a meshway fabric.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SetupConfig {
    pub name: String,
    /// Row ids, exact or a prefix ending in `*`.
    pub rows: Vec<String>,
    pub description: String,
    /// Where the hardware figures come from.
    pub source: Option<String>,
    /// What is assumed where the rows' sources are silent.
    pub assumption: Option<String>,
    /// GPUs when a row leaves them out.
    pub gpus: Option<u32>,
    /// Message size when a row leaves it out (a "peak busbw" summary).
    pub size: Option<Bytes>,
    /// How the benchmark ran rather than the hardware: the shortest time any collective took
    /// in these runs (one process driving all of a host's GPUs, `nccl-tests -g N`, launches
    /// their kernels one after another). meshway's time for a row is at least this; the
    /// source and the row that set it go in `source`.
    pub launch_floor: Option<Nanos>,
    pub fabric: FabricConfig,
    pub transport: Option<TransportConfig>,
}

/// Rows meshway cannot model yet, and why.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExcludedConfig {
    pub rows: Vec<String>,
    pub why: String,
}

/// The evidence for some rows outside the bound.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KnownConfig {
    /// Row ids, exact or a prefix ending in `*`.
    pub rows: Vec<String>,
    pub why: String,
}

fn matches(patterns: &[String], id: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => p == id,
    })
}

/// One row's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub id: String,
    pub op: String,
    pub gpus: u32,
    pub size_bytes: u64,
    pub setup: String,
    /// The algorithm meshway ran (what NCCL reported when the row says and meshway has it,
    /// else the fastest of meshway's candidates).
    pub algorithm: String,
    /// The protocol meshway ran it with (simple, ll128, ll), when the collective has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    pub nccl_algorithm: Option<String>,
    pub published_busbw_gbytes_per_s: f64,
    pub meshway_busbw_gbytes_per_s: f64,
    /// The published time where the row gives it, and meshway's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_time_us: Option<f64>,
    pub meshway_time_us: f64,
    /// Bandwidth error, (meshway - published) / published busbw; from the times where the
    /// row gives one (published time / meshway time - 1: the same ratio, without the
    /// rounding of small busbw values to 0.00).
    pub error: f64,
    pub size_band: &'static str,
    pub scale: &'static str,
    /// Why the row is off by more than [`OUTSIDE`], when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The bus bandwidth the published time gives (size / time x the operation's bus
    /// factor), when the row's published busbw disagrees with it by more than 2%: the error
    /// is from the time, and this is what the table shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busbw_from_time: Option<f64>,
}

/// A row not run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub id: String,
    pub why: String,
}

/// Median and worst |error| of a group of rows.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub op: String,
    pub size_band: &'static str,
    pub scale: &'static str,
    pub rows: usize,
    pub median_abs_error: f64,
    pub max_abs_error: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    pub rows: Vec<Outcome>,
    pub groups: Vec<Group>,
    pub skipped: Vec<Skipped>,
    /// Over every row run; None (JSON null) when no row ran.
    pub median_abs_error: Option<f64>,
    pub max_abs_error: Option<f64>,
}

/// |error| beyond which a row is reported with the reason it is outside.
pub const OUTSIDE: f64 = 0.25;

/// Size bands of the summary (nccl-tests sizes).
pub fn size_band(bytes: u64) -> &'static str {
    match bytes {
        0..=65_536 => "<=64KiB",
        65_537..=16_777_216 => "64KiB-16MiB",
        _ => ">16MiB",
    }
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Parses `nccl-tests.csv` (named `file` in messages).
pub fn parse_rows(text: &str, file: &str) -> Result<Vec<Row>, ValidateError> {
    let err = |line: u64, message: String| ValidateError::Csv { file: file.to_string(), line, message };
    let mut rd = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = rd.headers().map_err(|e| err(1, e.to_string()))?.clone();
    // Every column a row is read from: a misspelled one would read as blank in every row.
    const COLUMNS: [&str; 13] = [
        "id",
        "op",
        "gpus",
        "gpus_per_host",
        "gpu",
        "transport",
        "size_bytes",
        "time_us",
        "busbw_gbytes_per_s",
        "nccl_algo",
        "nccl_proto",
        "read_as",
        "source_url",
    ];
    if let Some(c) = COLUMNS.iter().find(|c| !headers.iter().any(|h| h == **c)) {
        return Err(err(1, format!("expected a column {c:?} (the columns read are {})", COLUMNS.join(", "))));
    }
    let mut rows: Vec<Row> = Vec::new();
    // Lines counted from the bytes: the reader's own count is one short with CRLF endings.
    let mut lines = inference::Lines::new(text);
    for rec in rd.records() {
        let rec = rec.map_err(|e| err(e.position().map_or(0, |p| lines.at(p.byte()) as u64), csv_message(&e)))?;
        let line = rec.position().map_or(0, |p| lines.at(p.byte()) as u64);
        // A blank record (a spreadsheet's trailing `,,,`) is no row.
        if rec.iter().all(str::is_empty) {
            continue;
        }
        let row: Row = rec.deserialize(Some(&headers)).map_err(|e| {
            let msg = match e.kind() {
                csv::ErrorKind::Deserialize { err: de, .. } => match de.field().and_then(|i| headers.get(i as usize)) {
                    Some(c) => {
                        let got = de.field().and_then(|i| rec.get(i as usize)).unwrap_or("");
                        format!("column {c:?}: {}", cell_message(de.kind(), got))
                    }
                    None => de.to_string(),
                },
                _ => e.to_string(),
            };
            err(line, msg)
        })?;
        let mut row = row;
        row.line = line;
        if row.id.is_empty() || rows.iter().any(|r| r.id == row.id) {
            return Err(err(line, format!("expected a unique non-empty id, got {:?}", row.id)));
        }
        // The operation goes into a scenario: one of the collectives, named as the workload
        // table names them.
        let op = <meshway_fabric::workload_config::OpConfig as Deserialize>::deserialize(
            serde::de::value::StrDeserializer::<serde::de::value::Error>::new(&row.op),
        );
        if op.is_err() {
            return Err(err(
                line,
                format!(
                    "column \"op\": expected all-reduce, all-gather, reduce-scatter, all-to-all, broadcast or send-recv, got {:?}",
                    row.op
                ),
            ));
        }
        if let Some(g) = row.gpus.filter(|g| *g < 2) {
            return Err(err(line, format!("column \"gpus\": a collective needs at least 2 GPUs, got {g}")));
        }
        if row.gpus_per_host == Some(0) {
            return Err(err(line, "column \"gpus_per_host\": expected at least 1".into()));
        }
        if let Some(b) = row.size_bytes.filter(|b| *b == 0 || *b > MAX_ROW_SIZE) {
            return Err(err(
                line,
                format!("column \"size_bytes\": expected 1 to {MAX_ROW_SIZE} bytes (1 TiB), got {b}"),
            ));
        }
        // Every published figure says where it comes from and how it was read.
        for (c, v) in [("source_url", &row.source_url), ("read_as", &row.read_as)] {
            if v.trim().is_empty() {
                return Err(err(line, format!("column {c:?}: every row cites its source and how it was read")));
            }
        }
        // NCCL's names as its logs and NCCL_ALGO / NCCL_PROTO give them; a name meshway does
        // not know would be echoed beside a run of the tuner's pick.
        if let Some(a) = row.nccl_algo.as_deref().map(str::trim).filter(|a| !a.is_empty() && algorithm_of(a).is_none())
        {
            return Err(err(
                line,
                format!("column \"nccl_algo\": expected Ring, Tree, NVLS, NVLSTree or CollNet (as NCCL names them), got {a:?}"),
            ));
        }
        if let Some(p) = row
            .nccl_proto
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty() && !["simple", "ll", "ll128"].contains(&p.to_ascii_lowercase().as_str()))
        {
            return Err(err(
                line,
                format!("column \"nccl_proto\": expected Simple, LL or LL128 (as NCCL names them), got {p:?}"),
            ));
        }
        // Times below a nanosecond are no measurement (1e-300 us gave an error of -100%).
        if let Some(t) = row.time_us.filter(|t| !(t.is_finite() && *t >= 1e-3)) {
            return Err(err(
                line,
                format!("time_us: expected a positive time of at least 0.001 microseconds, got {t}"),
            ));
        }
        if let Some(b) = row.busbw_gbytes_per_s.filter(|b| !(b.is_finite() && (*b == 0.0 || *b >= 1e-6))) {
            return Err(err(line, format!("busbw_gbytes_per_s: expected 0 or at least 0.000001 GB/s, got {b}")));
        }
        if row.time_us.is_some() && row.size_bytes.is_none() {
            return Err(err(line, "a row with time_us needs its size_bytes (the time is for one size)".into()));
        }
        if row.time_us.is_none() && row.busbw_gbytes_per_s.is_some_and(|b| b == 0.0) {
            return Err(err(line, "a row with busbw_gbytes_per_s 0 needs its time_us".into()));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(err(1, "expected a header and at least one row".into()));
    }
    Ok(rows)
}

/// What a cell that does not parse should hold, and what it held (the library's own words,
/// "invalid digit found in string", said neither).
pub(crate) fn cell_message(kind: &csv::DeserializeErrorKind, got: &str) -> String {
    use std::num::IntErrorKind;
    match kind {
        csv::DeserializeErrorKind::ParseInt(e) if matches!(e.kind(), IntErrorKind::PosOverflow) => {
            format!("expected a whole number, got {got:?}, which is too large")
        }
        csv::DeserializeErrorKind::ParseInt(_) => format!("expected a whole number, got {got:?}"),
        csv::DeserializeErrorKind::ParseFloat(_) => format!("expected a number, got {got:?}"),
        other => other.to_string(),
    }
}

/// A CSV reader's error in the file's terms: a record with another number of fields than
/// the header names the two counts.
pub(crate) fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("expected {expected_len} fields, as the header has, got {len}")
        }
        _ => e.to_string(),
    }
}

/// Parses `setups.toml` (named `file` in messages).
pub fn parse_setups(text: &str, file: &str) -> Result<SetupsFile, ValidateError> {
    let s: SetupsFile = meshway_units::units_required(|| toml::from_str(text))
        .map_err(|e| ValidateError::Setups(meshway_fabric::error::locate_toml_error(file, text, &e)))?;
    // A setup is a claim about hardware: it says where that comes from, or that it is assumed.
    for (i, x) in s.setup.iter().enumerate() {
        let given = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        if !given(&x.source) && !given(&x.assumption) {
            let ctx = meshway_fabric::scenario::Ctx::new(file, text, "setup", i, &format!("setup[{}]", i + 1));
            return Err(ValidateError::Setups(
                ctx.invalid("source", format!("setup {:?} gives neither a `source` nor an `assumption`", x.name)),
            ));
        }
        // A setup's defaults for its rows are checked as a row's are (a 100 TiB default ran
        // past the 1 TiB a row may give).
        let ctx = meshway_fabric::scenario::Ctx::new(file, text, "setup", i, &format!("setup[{}]", i + 1));
        if let Some(g) = x.gpus.filter(|g| *g < 2) {
            return Err(ValidateError::Setups(
                ctx.invalid("gpus", format!("a collective needs at least 2 GPUs, got {g}")),
            ));
        }
        if let Some(b) = x.size.filter(|b| b.0 == 0 || b.0 > MAX_ROW_SIZE) {
            return Err(ValidateError::Setups(ctx.invalid("size", format!("expected 1B to 1TiB, got {b}"))));
        }
        // As the inference and plan sets do: a name given twice is refused (it was a warning
        // here, an error there).
        if s.setup[..i].iter().any(|y| y.name == x.name) {
            return Err(ValidateError::Setups(
                ctx.invalid("name", format!("expected a name no other [[setup]] has, got {:?} again", x.name)),
            ));
        }
    }
    Ok(s)
}

/// meshway's algorithm for NCCL's name, when meshway has it.
fn algorithm_of(nccl: &str) -> Option<&'static str> {
    match nccl.to_ascii_lowercase().as_str() {
        "ring" => Some("ring"),
        "tree" => Some("tree"),
        "nvls" => Some("nvls"),
        "nvlstree" | "nvls_tree" | "nvls-tree" => Some("nvls-tree"),
        "collnet" | "collnetdirect" | "collnetchain" => Some("collnet"),
        _ => None,
    }
}

/// What meshway gives for one row: bus bandwidth (GB/s), time (ns), algorithm and protocol.
struct Run {
    busbw: f64,
    time_ns: u64,
    algorithm: String,
    protocol: Option<String>,
}

/// What meshway gives for `op` of `size` bytes on `fabric` with `algo` ("auto": the
/// tuner's pick).
#[allow(clippy::too_many_arguments)]
fn busbw(
    setup: &SetupConfig,
    fabric: &FabricConfig,
    op: &str,
    size: u64,
    algo: &str,
    proto: &str,
    cat: &Catalog,
    file: &str,
    row: &str,
) -> Result<Run, ValidateError> {
    let wl = format!(
        "kind = \"collective\"\nop = \"{op}\"\nsize = {size}\nalgorithm = \"{algo}\"\nprotocol = \"{proto}\"\n"
    );
    let workload: WorkloadConfig = toml::from_str(&wl).map_err(|e| ValidateError::Csv {
        file: file.to_string(),
        line: 0,
        message: format!("row {row}: {}", e.message()),
    })?;
    let config = ScenarioConfig {
        name: Some(format!("{}/{row}", setup.name)),
        seed: Some(1),
        fabric: Some(fabric.clone()),
        transport: setup.transport.clone(),
        workload: vec![workload],
        ..ScenarioConfig::default()
    };
    // Messages name the setup's line (`run` puts it in) instead of a file of their own.
    let scenario = Scenario { file: String::new(), text: String::new(), config, name: row.to_string() };
    let sim_err = |error| ValidateError::Simulate {
        file: file.to_string(),
        line: None,
        setup: setup.name.clone(),
        row: row.to_string(),
        error: Box::new(error),
    };
    let built = scenario.build(cat).map_err(|e| sim_err(e.into()))?;
    let no_files = |_: &str| -> Result<String, String> { Err("validation scenarios read no files".into()) };
    let s = Setup { scenario: &scenario, catalog: cat, fabric: &built, read_file: &no_files };
    let opts = Options { no_ideal: true, seed: Some(1), ..Options::default() };
    let r = simulate(&s, &opts, &mut |_, _| {}).map_err(sim_err)?;
    let w = r.workloads.first();
    Ok(Run {
        busbw: w.and_then(|w| w.busbw_gbps).unwrap_or(0.0) / 8.0,
        time_ns: w.and_then(|w| w.time_ns).unwrap_or(u64::MAX),
        algorithm: w.and_then(|w| w.algorithm.clone()).unwrap_or_else(|| algo.to_string()),
        protocol: w.and_then(|w| w.protocol.clone()),
    })
}

/// `e` (a setup that does not run for a row) with the setup's line in `setups_text`: the
/// line of the key a scenario error names (`fabric.gpu` is `gpu` under the setup's
/// `[setup.fabric]`), else of the setup's `name`; and the row's place in its file.
fn at_setup_line(e: ValidateError, setups_text: &str, nth: usize, rows_file: &str, row_line: u64) -> ValidateError {
    let ValidateError::Simulate { file, setup, row, error, .. } = e else { return e };
    let row = format!("{row} ({rows_file}:{row_line})");
    match *error {
        SimulateError::Scenario(FabricError::Invalid { key, message, .. }) => {
            let (section, name) = match key.split_once('.') {
                Some((table, k)) if table == "fabric" || table == "transport" => (format!("setup.{table}"), k),
                _ => ("setup".to_string(), key.as_str()),
            };
            let line = meshway_fabric::scenario::locate_key(setups_text, &section, nth, name);
            ValidateError::Setups(FabricError::Invalid {
                file,
                line,
                key: format!("setup[{}].{key}", nth + 1),
                message: format!("{message} (setup {setup:?}, for row {row})"),
            })
        }
        other => {
            let line = meshway_fabric::scenario::locate_key(setups_text, "setup", nth, "name");
            ValidateError::Simulate { file, line, setup, row, error: Box::new(other) }
        }
    }
}

/// Why a row off by more than [`OUTSIDE`] is outside, from what the row says NCCL did and
/// what meshway does not model yet.
fn why_outside(row: &Row, size: u64, error: f64) -> String {
    let algo = row.nccl_algo.as_deref().unwrap_or("");
    if algo.to_ascii_lowercase().starts_with("collnet") || row.id.contains("sharp") {
        return "NCCL may have reduced in the InfiniBand switches (SHARP / CollNet); this setup does not model SHARP switches".into();
    }
    if size <= 1 << 20 {
        return if error > 0.0 {
            "small message: meshway uses the base and step latencies of NCCL's tuning model (tuning.cc; for all-to-all, which that model does not cover, the ring figures), and this run took longer; the source does not say where the time went".into()
        } else {
            "small message: meshway is slower than measured; the source does not say which algorithm and protocol ran"
                .into()
        };
    }
    if size <= 64 << 20 && error > 0.0 {
        // Not fewer channels for Simple: NCCL trims a ring's or tree's channels only below
        // nChannels x threads x threshold bytes (32 KiB a channel for Simple; enqueue.cc,
        // getAlgoInfo), 2 MiB at 64 channels, under this band (ring LL's threshold grows
        // with the ranks, but LL is rarely picked at these sizes).
        return "medium message: meshway uses the step latencies of NCCL's tuning model (tuning.cc) and the catalog's achievable rates, and this run was slower; the source does not say what it lost at this size".into();
    }
    if error > 0.0 {
        "meshway runs NVLink and the NICs at the achievable rates of the catalog (NCCL's topology model and its maintainers' figures; the line rate where the catalog gives none); this system measured less".into()
    } else {
        "meshway is slower than measured: NCCL's algorithm or protocol for this size is faster than meshway's candidates here".into()
    }
}

/// Where each row goes: the index of its setup in `setups.setup`, or the reason it is not run.
pub fn assign(
    rows: &[Row],
    setups: &SetupsFile,
    setups_file: &str,
) -> Result<Vec<Result<usize, String>>, ValidateError> {
    rows.iter()
        .map(|row| {
            if let Some(x) = setups.excluded.iter().find(|x| matches(&x.rows, &row.id)) {
                return Ok(Err(x.why.clone()));
            }
            match setups.setup.iter().position(|s| matches(&s.rows, &row.id)) {
                Some(i) => Ok(Ok(i)),
                None => Err(ValidateError::Unmatched { file: setups_file.to_string(), row: row.id.clone() }),
            }
        })
        .collect()
}

/// Entries of `setups` none of whose row patterns match a row of `rows` (a typo, or a row
/// since removed): one line each, for the full set (a subset of the rows leaves entries
/// unmatched on purpose).
pub fn stale_entries(rows: &[Row], setups: &SetupsFile) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: String, patterns: &[String]| {
        for p in patterns {
            if !rows.iter().any(|r| matches(std::slice::from_ref(p), &r.id)) {
                out.push(format!("{what}: {p:?} matches no row"));
            }
        }
    };
    for x in &setups.setup {
        check(format!("[[setup]] {:?}", x.name), &x.rows);
    }
    for (i, x) in setups.excluded.iter().enumerate() {
        check(format!("[[excluded]] {}", i + 1), &x.rows);
    }
    for (i, x) in setups.known.iter().enumerate() {
        check(format!("[[known]] {}", i + 1), &x.rows);
    }
    out
}

/// Runs every row of `rows_text` against `setups_text` (named `rows_file`, `setups_file`).
pub fn run(
    rows_text: &str,
    rows_file: &str,
    setups_text: &str,
    setups_file: &str,
    cat: &Catalog,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ValidationReport, ValidateError> {
    let rows = parse_rows(rows_text, rows_file)?;
    let setups = parse_setups(setups_text, setups_file)?;
    let assigned = assign(&rows, &setups, setups_file)?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (i, (row, to)) in rows.iter().zip(assigned).enumerate() {
        progress(i, rows.len());
        let setup = match to {
            Err(why) => {
                skipped.push(Skipped { id: row.id.clone(), why });
                continue;
            }
            Ok(i) => (i, &setups.setup[i]),
        };
        let (setup_index, setup) = setup;
        let (Some(published), Some(gpus), Some(size)) =
            (row.busbw_gbytes_per_s, row.gpus.or(setup.gpus), row.size_bytes.or(setup.size.map(|b| b.0)))
        else {
            skipped.push(Skipped { id: row.id.clone(), why: "the row gives no busbw, GPU count or size".into() });
            continue;
        };
        let mut fabric = setup.fabric.clone();
        fabric.gpus = Some(gpus);
        let gph = fabric.gpus_per_host.unwrap_or(cat.defaults.gpus_per_host).min(gpus);
        fabric.gpus_per_host = Some(gph);
        // The row's hosts are the setup's: a row measured on other hosts belongs to another setup.
        if let Some(g) = row.gpus_per_host.filter(|g| *g != gph) {
            return Err(ValidateError::Csv {
                file: rows_file.to_string(),
                line: row.line,
                message: format!(
                    "column \"gpus_per_host\": {g}, but setup {:?} builds hosts of {gph} GPUs: give the row a setup of its own",
                    setup.name
                ),
            });
        }
        if let Some(d) = fabric.nvlink_domain {
            fabric.nvlink_domain = Some(nvlink_domain(gpus, gph, d));
        }
        let nccl = row.nccl_algo.clone().filter(|a| !a.is_empty());
        // NCCL's algorithm when meshway has it for this operation (NCCL reports "Ring" for
        // an all-to-all, which sends directly), else the tuner's pick.
        let algo = match nccl.as_deref().and_then(algorithm_of) {
            Some(a) if row.op == "all-reduce" || a == "ring" && row.op != "all-to-all" || a == "nvls" => a,
            _ => "auto",
        };
        // NCCL's protocol with the algorithm it ran with (alone it would leave the tuner a
        // choice it did not have).
        let proto = match row.nccl_proto.as_deref().map(|p| p.trim().to_ascii_lowercase()) {
            Some(p) if algo != "auto" && !p.is_empty() => p,
            _ => "auto".to_string(),
        };
        let best = match busbw(setup, &fabric, &row.op, size, algo, &proto, cat, setups_file, &row.id) {
            Ok(b) => b,
            // Refused: the algorithm here, or the row's protocol through this NIC (AWS's first
            // EFA runs only Simple).
            Err(ValidateError::Simulate { error, .. })
                if matches!(&*error, SimulateError::Workload { .. })
                    || matches!(&*error, SimulateError::Scenario(FabricError::Invalid { key, .. }) if key.ends_with(".protocol")) =>
            {
                skipped.push(Skipped {
                    id: row.id.clone(),
                    // The generated scenario has no file name: its messages start ": ".
                    why: format!(
                        "meshway cannot run {} with {algo} here: {}",
                        row.op,
                        error.to_string().trim_start_matches(": ")
                    ),
                });
                continue;
            }
            Err(e) => return Err(at_setup_line(e, setups_text, setup_index, rows_file, row.line)),
        };
        // The benchmark's own floor: a collective faster than it takes the floor's time, at
        // the bus bandwidth that time gives.
        let best = match setup.launch_floor {
            Some(f) if best.time_ns < f.0 && best.time_ns > 0 => {
                Run { busbw: best.busbw * best.time_ns as f64 / f.0 as f64, time_ns: f.0, ..best }
            }
            _ => best,
        };
        let time_us = row.time_us.filter(|t| *t > 0.0);
        let meshway_us = best.time_ns as f64 / 1e3;
        let error = match time_us {
            Some(t) => t / meshway_us - 1.0,
            None => (best.busbw - published) / published,
        };
        // meshway's busbw is its size / time x the bus factor, so the published time's is
        // meshway's scaled by the times (below 1 GB/s a source's rounding to 0.01 is left alone).
        let busbw_from_time = time_us
            .filter(|_| published >= 1.0 && meshway_us > 0.0)
            .map(|t| best.busbw * meshway_us / t)
            .filter(|b| (b / published - 1.0).abs() > 0.02);
        out.push(Outcome {
            id: row.id.clone(),
            op: row.op.clone(),
            gpus,
            size_bytes: size,
            setup: setup.name.clone(),
            algorithm: best.algorithm,
            protocol: best.protocol,
            nccl_algorithm: nccl,
            published_busbw_gbytes_per_s: published,
            meshway_busbw_gbytes_per_s: best.busbw,
            published_time_us: time_us,
            meshway_time_us: meshway_us,
            error,
            size_band: size_band(size),
            busbw_from_time,
            scale: if gpus > gph { "multi-host" } else { "one host" },
            why: (error.abs() > OUTSIDE).then(|| {
                setups
                    .known
                    .iter()
                    .find(|k| matches(&k.rows, &row.id))
                    .map_or_else(|| why_outside(row, size, error), |k| k.why.clone())
            }),
        });
    }
    progress(rows.len(), rows.len());
    Ok(summarize(out, skipped))
}

/// The NVLink domain a row's job runs in, for a setup whose racks hold `rack` GPUs: the
/// whole job when it fits one rack, else the largest domain of at most `rack` GPUs, a whole
/// number of hosts of `per_host`, that splits the job evenly (128 GPUs on 72-GPU racks: two
/// domains of 64).
pub fn nvlink_domain(gpus: u32, per_host: u32, rack: u32) -> u32 {
    if gpus <= rack {
        return gpus;
    }
    let per_host = per_host.max(1);
    (per_host..=rack).rev().find(|d| d.is_multiple_of(per_host) && gpus.is_multiple_of(*d)).unwrap_or(per_host)
}

/// Groups by operation, size band and scale; overall median and max |error|.
pub fn summarize(rows: Vec<Outcome>, skipped: Vec<Skipped>) -> ValidationReport {
    let mut keys: Vec<(String, &'static str, &'static str)> =
        rows.iter().map(|r| (r.op.clone(), r.size_band, r.scale)).collect();
    keys.sort();
    keys.dedup();
    let groups = keys
        .into_iter()
        .map(|(op, band, scale)| {
            let mut errs: Vec<f64> = rows
                .iter()
                .filter(|r| r.op == op && r.size_band == band && r.scale == scale)
                .map(|r| r.error.abs())
                .collect();
            let max = errs.iter().copied().fold(0.0, f64::max);
            Group {
                op,
                size_band: band,
                scale,
                rows: errs.len(),
                median_abs_error: median(&mut errs),
                max_abs_error: max,
            }
        })
        .collect();
    let mut all: Vec<f64> = rows.iter().map(|r| r.error.abs()).collect();
    let max = all.iter().copied().fold(0.0, f64::max);
    let ran = !all.is_empty();
    ValidationReport {
        median_abs_error: ran.then(|| median(&mut all)),
        max_abs_error: ran.then_some(max),
        rows,
        groups,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_job_larger_than_a_rack_splits_into_even_nvlink_domains() {
        assert_eq!(nvlink_domain(8, 4, 72), 8); // within one rack: the whole job
        assert_eq!(nvlink_domain(72, 4, 72), 72);
        assert_eq!(nvlink_domain(144, 4, 72), 72);
        assert_eq!(nvlink_domain(1440, 4, 72), 72);
        assert_eq!(nvlink_domain(128, 4, 72), 64); // two racks of 64
        assert_eq!(nvlink_domain(192, 4, 72), 64); // three of 64
        assert_eq!(nvlink_domain(100, 4, 72), 20); // 50 and 25 are not whole hosts of 4: 5 x 20
    }

    use super::*;

    const CSV: &str = "id,op,gpus,gpus_per_host,gpu,nic,nic_gbps_per_gpu,fabric,transport,size_bytes,time_us,algbw_gbytes_per_s,busbw_gbytes_per_s,nccl_algo,nccl_proto,nccl_version,read_as,reading_error,source_url,note\n\
        t-1,all-reduce,8,8,H100,,,,nvlink-only,1073741824,,,100.0,Ring,,,table,,https://example.org/a,\"a note, with a comma\"\n\
        t-2,all-reduce,,,H100,,,,nvlink-only,,,,50.0,,,,table,,https://example.org/a,\n\
        x-1,all-reduce,72,4,GB200,,,,nvlink-only,1024,,,1.0,,,,table,,https://example.org/b,\n";

    const SETUPS: &str = r#"
[[setup]]
name = "one-host"
rows = ["t-*"]
description = "one 8-GPU host"
assumption = "a test's host"
gpus = 8
size = "1GiB"
[setup.fabric]
kind = "leaf-spine"
gpus-per-host = 8
nic = "400Gbps"
nvlink = "3.6Tbps"
[setup.transport]
kind = "infiniband"

[[excluded]]
rows = ["x-*"]
why = "multi-node NVLink"
"#;

    /// The review's set: CRLF line endings kept line numbers (they were one short); a busbw
    /// that disagrees with its time is shown from the time, as the error is; a setup's own
    /// size is bounded as a row's; nothing run reports no error (JSON null, not 0%).
    #[test]
    fn crlf_lines_inconsistent_busbw_setup_bounds_and_empty_runs() {
        let cat = Catalog::builtin();
        let crlf = CSV.replace('\n', "\r\n").replace("t-2,all-reduce,,", "t-2,all-reduce,0,");
        let e = parse_rows(&crlf, "v.csv").unwrap_err().to_string();
        assert!(e.starts_with("v.csv:3: column \"gpus\""), "{e}");
        // t-1 with a time: its busbw of 100 GB/s is far from what 50 ms gives.
        let timed = CSV.replace("1073741824,,,100.0", "1073741824,50000,,100.0");
        let r = run(&timed, "v.csv", SETUPS, "s.toml", &cat, &mut |_, _| {}).unwrap();
        let a = &r.rows[0];
        let implied = a.busbw_from_time.expect("flagged");
        assert!((implied - a.meshway_busbw_gbytes_per_s * a.meshway_time_us / 50_000.0).abs() < 1e-9);
        assert!((a.error - (50_000.0 / a.meshway_time_us - 1.0)).abs() < 1e-12);
        assert!(r.rows[1].busbw_from_time.is_none());
        let e = parse_setups(&SETUPS.replace("size = \"1GiB\"", "size = \"100TiB\""), "s.toml").unwrap_err();
        assert!(e.to_string().contains("`setup[1].size`: expected 1B to 1TiB, got 100TiB"), "{e}");
        let e = parse_setups(&SETUPS.replace("gpus = 8\n", "gpus = 1\n"), "s.toml").unwrap_err();
        assert!(e.to_string().contains("`setup[1].gpus`: a collective needs at least 2 GPUs, got 1"), "{e}");
        let none = CSV.lines().take(1).chain(CSV.lines().skip(3)).collect::<Vec<_>>().join("\n");
        let r = run(&none, "v.csv", SETUPS, "s.toml", &cat, &mut |_, _| {}).unwrap();
        assert!(r.rows.is_empty() && r.median_abs_error.is_none() && r.max_abs_error.is_none());
    }

    #[test]
    fn rows_map_to_setups_and_errors_are_signed_shares() {
        let cat = Catalog::builtin();
        let r = run(CSV, "v.csv", SETUPS, "s.toml", &cat, &mut |_, _| {}).unwrap();
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.skipped[0].why, "multi-node NVLink");
        let a = &r.rows[0];
        assert_eq!((a.gpus, a.size_bytes, a.algorithm.as_str()), (8, 1 << 30, "ring"));
        assert!((a.error - (a.meshway_busbw_gbytes_per_s - 100.0) / 100.0).abs() < 1e-12);
        // A 1 GiB ring all-reduce over 3.6 Tbps NVLink: busbw just under the 370.8 GB/s an
        // H100 (the default GPU model) reaches.
        assert!(a.meshway_busbw_gbytes_per_s > 340.0 && a.meshway_busbw_gbytes_per_s <= 370.8, "{a:?}");
        // The second row takes the setup's GPU count and size; no algorithm given: tuned,
        // and at 1 GiB on one H100 host NVLS is the fastest.
        let b = &r.rows[1];
        assert_eq!((b.gpus, b.size_bytes), (8, 1 << 30));
        assert_eq!(b.algorithm, "nvls");
        assert_eq!(r.groups.len(), 1);
        assert_eq!(r.groups[0].rows, 2);
        assert!(r.max_abs_error.unwrap() >= r.median_abs_error.unwrap());
        // The protocol NCCL ran with runs with the algorithm (the tuner picked Simple here);
        // alone, without an algorithm, it is left to the tuner as the algorithm is.
        let protos = |csv: &str| -> Vec<Option<String>> {
            let r = run(csv, "v.csv", SETUPS, "s.toml", &cat, &mut |_, _| {}).unwrap();
            r.rows.iter().map(|o| o.protocol.clone()).collect()
        };
        assert_eq!(protos(CSV)[0].as_deref(), Some("simple"));
        let ll = CSV.replace("100.0,Ring,,", "100.0,Ring,LL,");
        assert_eq!(protos(&ll)[0].as_deref(), Some("ll"));
        let alone = CSV.replace("100.0,Ring,,", "100.0,,LL,");
        assert_eq!(protos(&alone)[0], protos(&CSV.replace("100.0,Ring,,", "100.0,,,"))[0]);
    }

    /// A row's protocol the setup's NIC cannot run skips the row, saying why (it stopped the
    /// whole validation with an error naming a key setups.toml does not have).
    #[test]
    fn a_protocol_the_nic_cannot_run_skips_the_row() {
        let cat = Catalog::builtin();
        let csv = "id,op,gpus,gpus_per_host,gpu,nic,nic_gbps_per_gpu,fabric,transport,size_bytes,time_us,algbw_gbytes_per_s,busbw_gbytes_per_s,nccl_algo,nccl_proto,nccl_version,read_as,reading_error,source_url,note\n\
            p-1,all-reduce,16,8,A100,,,,efa,1048576,,,10.0,Ring,LL,,table,,https://example.org/a,\n";
        let setups = "[[setup]]\nname = \"p4d\"\nrows = [\"p-*\"]\ndescription = \"two p4d\"\nassumption = \"a test\"\n\
                      [setup.fabric]\nkind = \"leaf-spine\"\ngpus-per-host = 8\nnic = \"50Gbps\"\nnic-model = \"aws-efa-p4d\"\n\
                      gpu = \"a100-sxm\"\n[setup.transport]\nkind = \"efa\"\n";
        let r = run(csv, "v.csv", setups, "s.toml", &cat, &mut |_, _| {}).unwrap();
        assert!(r.rows.is_empty());
        assert!(r.skipped[0].why.contains("runs only simple"), "{}", r.skipped[0].why);
    }

    /// A launch floor: a row faster than the floor takes the floor's time, at the busbw that
    /// time gives (rows with and without a published time); a slower row is untouched.
    #[test]
    fn a_launch_floor_bounds_the_time_from_below() {
        let cat = Catalog::builtin();
        let csv = "id,op,gpus,gpus_per_host,gpu,nic,nic_gbps_per_gpu,fabric,transport,size_bytes,time_us,algbw_gbytes_per_s,busbw_gbytes_per_s,nccl_algo,nccl_proto,nccl_version,read_as,reading_error,source_url,note\n\
            t-1,all-gather,8,8,H100,,,,nvlink-only,65536,40.0,,1.43,Ring,,,table,,https://example.org/a,\n\
            t-2,all-gather,8,8,H100,,,,nvlink-only,65536,,,1.43,Ring,,,table,,https://example.org/a,\n\
            t-3,all-gather,8,8,H100,,,,nvlink-only,1073741824,,,350.0,Ring,,,table,,https://example.org/a,\n";
        let free = run(csv, "v.csv", SETUPS, "s.toml", &cat, &mut |_, _| {}).unwrap();
        let floored = SETUPS.replace("size = \"1GiB\"", "size = \"1GiB\"\nlaunch-floor = \"50us\"");
        let f = run(csv, "v.csv", &floored, "s.toml", &cat, &mut |_, _| {}).unwrap();
        // Without the floor a 64 KiB ring all-gather on 8 H100s takes well under 50 us.
        assert!(free.rows[0].meshway_time_us < 30.0, "{:?}", free.rows[0]);
        for i in 0..2 {
            let (a, b) = (&free.rows[i], &f.rows[i]);
            assert_eq!(b.meshway_time_us, 50.0);
            let want = a.meshway_busbw_gbytes_per_s * a.meshway_time_us / 50.0;
            assert!((b.meshway_busbw_gbytes_per_s - want).abs() < 1e-9 * want, "{b:?}");
        }
        // With a published time the error is from the times: 40 / 50 - 1.
        assert!((f.rows[0].error - (40.0 / 50.0 - 1.0)).abs() < 1e-12);
        assert!((f.rows[1].error - (f.rows[1].meshway_busbw_gbytes_per_s - 1.43) / 1.43).abs() < 1e-12);
        // 1 GiB takes milliseconds: the floor does not bind.
        assert_eq!(free.rows[2].meshway_time_us, f.rows[2].meshway_time_us);
        assert_eq!(free.rows[2].meshway_busbw_gbytes_per_s, f.rows[2].meshway_busbw_gbytes_per_s);
    }

    #[test]
    fn a_row_without_a_setup_is_an_error_naming_it() {
        let cat = Catalog::builtin();
        let e = run(CSV, "v.csv", "", "s.toml", &cat, &mut |_, _| {}).unwrap_err().to_string();
        assert_eq!(e, "s.toml: row t-1 matches no [[setup]] and no [[excluded]] entry; add it to one");
        let e = parse_setups("[[setup]]\nname = 1\n", "s.toml").unwrap_err().to_string();
        assert!(e.starts_with("s.toml:2:8: `setup[1].name`"), "{e}");
        let e = parse_rows("id,op\nq\n", "v.csv").unwrap_err().to_string();
        assert!(e.starts_with("v.csv:1: expected a column \"gpus\""), "{e}");
        let head = CSV.lines().next().unwrap_or_default();
        let e = parse_rows(&format!("{head}\nq\n"), "v.csv").unwrap_err().to_string();
        assert!(e.starts_with("v.csv:2: "), "{e}");
    }

    #[test]
    fn medians_and_bands() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(size_band(65_536), "<=64KiB");
        assert_eq!(size_band(16 << 20), "64KiB-16MiB");
        assert_eq!(size_band((16 << 20) + 1), ">16MiB");
        assert!(matches(&["a-*".into()], "a-1") && !matches(&["a-1".into()], "a-10"));
    }
}
