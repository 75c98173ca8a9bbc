//! Published serving measurements against meshway's inference model.
//!
//! A validation set's `inference/` directory holds `throughput.csv` (offline maximum
//! throughput across prompt and output lengths), `latency-load.csv` (time to first token and
//! inter-token latency at several request rates) and `setups.toml`, which says how rows map
//! to meshway models (the `[[llm]]` and `[[gpu]]` of each published model and GPU name, and
//! the engine's settings) or why rows are left out. Every row is run as a one-server
//! scenario with no network: offline rows as all requests sent at once, rate rows as the
//! row's request count at Poisson times over its span at the rate.
//!
//! Pure: the caller reads the files and passes their text.

use crate::{median, ValidateError};
use meshway_fabric::catalog::{on_globe, Place};
use meshway_fabric::infer_config::Continent;
use meshway_fabric::{Catalog, FabricError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The published tables a `[[setup]]` or `[[excluded]]` can name.
const SERVING_FILES: [&str; 2] = ["throughput.csv", "latency-load.csv"];

/// `inference/setups.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InferSetups {
    #[serde(default)]
    pub setup: Vec<InferSetup>,
    #[serde(default)]
    pub excluded: Vec<InferExcluded>,
    /// Why some rows' figures stay outside their bound, where the evidence says.
    #[serde(default)]
    pub known: Vec<InferKnown>,
}

/// Rows of one file that meshway runs with one engine configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InferSetup {
    pub name: String,
    /// `throughput.csv` or `latency-load.csv`.
    pub file: String,
    /// Column = value (or a list of values): a row belongs when every column holds one of
    /// its values exactly.
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, Cell>,
    /// Published model name -> catalog `[[llm]]`.
    pub models: BTreeMap<String, String>,
    /// Published GPU name -> catalog `[[gpu]]`.
    pub gpus: BTreeMap<String, String>,
    /// `[[model]]` keys of the engine (precision, max-batch, token-budget, ...).
    #[serde(default)]
    pub model: toml::Table,
    /// Requests of an offline row (all sent at once) when the row does not say.
    pub requests: Option<u32>,
    /// Requests of a row by "prompt/output" tokens (e.g. "128/128"), when the source gives a
    /// count per length: takes precedence over `requests`; a row's own `num_requests` takes
    /// precedence over both.
    #[serde(default)]
    pub requests_by_length: BTreeMap<String, u32>,
    /// How long a closed-loop (concurrency) row runs (default 2 minutes).
    pub duration: Option<meshway_units::Nanos>,
    pub description: String,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

/// Rows left out, and why.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InferExcluded {
    pub file: String,
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, Cell>,
    pub why: String,
}

/// A known reason for figures outside their bound: rows of `file` whose columns match, for
/// `metric` (every metric when absent).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InferKnown {
    pub file: String,
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, Cell>,
    pub metric: Option<String>,
    pub why: String,
}

/// One compared figure of a row.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// "output tokens/s", "ttft ms" or "itl ms".
    pub metric: &'static str,
    pub published: f64,
    pub meshway: f64,
    /// (meshway - published) / published.
    pub error: f64,
    /// Why the figure is outside its bound, when `setups.toml` knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// One row's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct InferOutcome {
    pub file: String,
    /// Line in the file (header = 1).
    pub line: usize,
    pub setup: String,
    pub model: String,
    pub gpu: String,
    pub gpus: u32,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// "offline" or "N req/s".
    pub load: String,
    pub figures: Vec<Figure>,
}

/// A row not run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct InferSkipped {
    pub file: String,
    pub line: usize,
    pub why: String,
}

/// Median and worst |error| of one metric over a group of rows.
#[derive(Debug, Clone, Serialize)]
pub struct InferGroup {
    pub setup: String,
    pub model: String,
    pub metric: &'static str,
    pub rows: usize,
    pub median_abs_error: f64,
    pub max_abs_error: f64,
    /// Share of rows within the bound for the metric (15% throughput, 20% latency).
    pub within_bound: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InferValidation {
    pub rows: Vec<InferOutcome>,
    pub groups: Vec<InferGroup>,
    pub skipped: Vec<InferSkipped>,
    /// What each setup that ran rows aligned: its engine settings, sources and assumptions.
    pub setups: Vec<SetupNote>,
    /// Inter-region round trips (`wan-rtt.csv`), when the set has them.
    pub wan: Vec<WanOutcome>,
    pub wan_groups: Vec<InferGroup>,
}

/// How a setup maps its rows to meshway.
#[derive(Debug, Clone, Serialize)]
pub struct SetupNote {
    pub name: String,
    pub description: String,
    /// The `[[model]]` keys it sets, as TOML.
    pub model: String,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

/// One published round trip between two cloud regions against meshway's path model.
#[derive(Debug, Clone, Serialize)]
pub struct WanOutcome {
    /// The table it comes from (its file name) and its line there.
    pub file: String,
    pub line: usize,
    pub from: String,
    pub to: String,
    pub class: String,
    pub great_circle_km: f64,
    pub published_ms: f64,
    /// 2 x (the routed fibre length x fibre delay + the fixed per-path cost of the row's
    /// pair of continents): within a continent the great circle times its route factor,
    /// between continents over the catalog's cable landings (`via`).
    pub meshway_ms: f64,
    /// The routed fibre length in km.
    pub routed_km: f64,
    /// Its ratio to the great circle: the path's effective route factor, not a catalog value.
    pub route_factor: f64,
    /// The cable landings the path passes, in order (empty for a direct path).
    pub via: Vec<String>,
    pub error: f64,
}

pub use meshway_fabric::catalog::great_circle_km;

/// A pair class's group: a round trip is the same both ways, so `EU-NA` groups with `NA-EU`
/// (the tables' own spellings, continents in the order NA, EU, APAC, SA, ME, AF).
fn group_class(class: &str) -> String {
    const ORDER: [&str; 6] = ["NA", "EU", "APAC", "SA", "ME", "AF"];
    let rank = |c: &str| ORDER.iter().position(|x| *x == c).unwrap_or(ORDER.len());
    match class.split_once('-') {
        Some((a, b)) if a != "intra" && rank(b) < rank(a) => format!("{b}-{a}"),
        _ => class.to_string(),
    }
}

/// The continents of a `pair_class` such as `intra-EU` or `NA-APAC`.
pub fn pair_continents(class: &str) -> Option<(Continent, Continent)> {
    if let Some(c) = class.strip_prefix("intra-") {
        let c = Continent::from_code(c)?;
        return Some((c, c));
    }
    let (a, b) = class.split_once('-')?;
    Some((Continent::from_code(a)?, Continent::from_code(b)?))
}

/// Runs an inter-region round-trip table such as `wan-rtt.csv` (named `file`): each row's
/// round trip from its two cities' coordinates routed as `InferenceDefaults::wan_path` does
/// (great circle times the route factor within a continent, over the cable landings between
/// continents, with the fixed per-path cost of its pair of continents, `pair_class`) and the
/// fibre delay (no last mile or access hops: the tables are between data centres).
pub fn run_wan(text: &str, file: &str, cat: &Catalog) -> Result<(Vec<WanOutcome>, Vec<InferGroup>), ValidateError> {
    let d = cat.inference.as_ref().ok_or_else(|| csv_err(file, 0, "the catalog has no [inference] section".into()))?;
    let per_km = cat.constants.fiber_delay_per_km.0 as f64;
    let name = std::path::Path::new(file).file_name().map_or(file.to_string(), |n| n.to_string_lossy().into_owned());
    let mut out = Vec::new();
    for (line, row) in table(text, file)? {
        let f = |c: &str| -> Result<f64, ValidateError> {
            num(&row, c)
                .filter(|x: &f64| x.is_finite())
                .ok_or_else(|| csv_err(file, line, format!("expected a finite number in column {c}")))
        };
        let (from, to) = ((f("from_lat")?, f("from_lon")?), (f("to_lat")?, f("to_lon")?));
        let km = great_circle_km(from.0, from.1, to.0, to.1);
        let published = f("rtt_ms")?;
        if published <= 0.0 {
            return Err(csv_err(
                file,
                line,
                format!("expected a positive round trip in column rtt_ms, got {published}"),
            ));
        }
        for (lat, lon, which) in [(from.0, from.1, "from"), (to.0, to.1, "to")] {
            if !on_globe(lat, lon) {
                return Err(csv_err(
                    file,
                    line,
                    format!("expected {which}_lat in -90..90 and {which}_lon in -180..180, got {lat}, {lon}"),
                ));
            }
        }
        let class = row.get("pair_class").cloned().unwrap_or_default();
        // A class that names no continents routed the row as if it gave none (a typo moved
        // a round trip from -21% to +23%).
        let pair = pair_continents(&class);
        if pair.is_none() && !class.is_empty() {
            return Err(csv_err(
                file,
                line,
                format!(
                    "column pair_class: {class:?} is not intra-<code> or <code>-<code> with continent codes NA, SA, EU, APAC, ME, AF"
                ),
            ));
        }
        let path = d.wan_path(
            Place { lat: from.0, lon: from.1, continent: pair.map(|p| p.0) },
            Place { lat: to.0, lon: to.1, continent: pair.map(|p| p.1) },
        );
        let one_way_ns = path.fiber_km * per_km + path.fixed.0 as f64;
        let meshway = 2.0 * one_way_ns * 1e-6;
        // A pair given twice in one direction would count twice in the statistics.
        let (a, b) = (row.get("from").cloned().unwrap_or_default(), row.get("to").cloned().unwrap_or_default());
        if !a.is_empty() || !b.is_empty() {
            if let Some(o) = out.iter().find(|o: &&WanOutcome| o.from == a && o.to == b) {
                return Err(csv_err(
                    file,
                    line,
                    format!("the pair {a:?} -> {b:?} is given twice (line {} too)", o.line),
                ));
            }
        }
        out.push(WanOutcome {
            file: name.clone(),
            line,
            from: row.get("from").cloned().unwrap_or_default(),
            to: row.get("to").cloned().unwrap_or_default(),
            class,
            great_circle_km: km,
            published_ms: published,
            meshway_ms: meshway,
            routed_km: path.fiber_km,
            route_factor: if km > 0.0 { path.fiber_km / km } else { 1.0 },
            via: path.via,
            error: (meshway - published) / published,
        });
    }
    let mut classes: Vec<String> = out.iter().map(|w| group_class(&w.class)).collect();
    classes.sort();
    classes.dedup();
    classes.push("all".into());
    let groups = classes
        .into_iter()
        .map(|c| {
            let mut e: Vec<f64> =
                out.iter().filter(|w| c == "all" || group_class(&w.class) == c).map(|w| w.error.abs()).collect();
            let within = e.iter().filter(|x| **x <= 0.15).count() as f64 / e.len().max(1) as f64;
            InferGroup {
                setup: name.trim_end_matches(".csv").to_string(),
                rows: e.len(),
                max_abs_error: e.iter().copied().fold(0.0, f64::max),
                median_abs_error: median(&mut e),
                within_bound: within,
                model: c,
                metric: "rtt ms",
            }
        })
        .collect();
    Ok((out, groups))
}

/// The figures a serving row compares.
pub const SERVING_METRICS: [&str; 3] = ["output tokens/s", "ttft ms", "itl ms"];

/// The bound a metric is held to: throughput and round trips 15%, serving latencies 20%.
pub fn bound(metric: &str) -> f64 {
    if metric.contains("tokens/s") || metric == "rtt ms" {
        0.15
    } else {
        0.20
    }
}

fn csv_err(file: &str, line: usize, message: String) -> ValidateError {
    ValidateError::Csv { file: file.to_string(), line: line as u64, message }
}

/// A CSV row: column -> value.
type CsvRow = BTreeMap<String, String>;

/// Line numbers of a text's records, counted forward from the last one asked for (records
/// come in order, so the text is scanned once).
pub(crate) struct Lines<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(text: &'a str) -> Lines<'a> {
        Lines { text: text.as_bytes(), pos: 0, line: 1 }
    }

    /// The 1-based line a record starting at byte offset `byte` is on (the csv reader's record
    /// position can sit on the line break that ends the previous record).
    pub(crate) fn at(&mut self, byte: u64) -> usize {
        let t = self.text;
        let mut end = usize::try_from(byte).unwrap_or(usize::MAX).min(t.len());
        while end < t.len() && matches!(t[end], b'\n' | b'\r') {
            end += 1;
        }
        if end < self.pos {
            (self.pos, self.line) = (0, 1);
        }
        self.line += t[self.pos..end].iter().filter(|b| **b == b'\n').count();
        self.pos = end;
        self.line
    }
}

/// The file name of a path (what `setups.toml`'s `file` keys name).
fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// A CSV file as (line in the file, header = 1; row) pairs.
fn table(text: &str, file: &str) -> Result<Vec<(usize, CsvRow)>, ValidateError> {
    let mut rd = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = rd.headers().map_err(|e| csv_err(file, 1, e.to_string()))?.clone();
    for (i, h) in headers.iter().enumerate() {
        if headers.iter().take(i).any(|x| x == h) {
            return Err(csv_err(file, 1, format!("column {h:?} appears twice")));
        }
    }
    let mut lines = Lines { text: text.as_bytes(), pos: 0, line: 1 };
    let mut out = Vec::new();
    for rec in rd.records() {
        let rec =
            rec.map_err(|e| csv_err(file, e.position().map_or(0, |p| lines.at(p.byte())), crate::csv_message(&e)))?;
        let line = rec.position().map_or(0, |p| lines.at(p.byte()));
        out.push((line, headers.iter().zip(rec.iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect()));
    }
    if out.is_empty() {
        return Err(csv_err(file, 1, "expected a header and at least one row".into()));
    }
    Ok(out)
}

/// The value a `match` column must hold: one text, or any of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell(pub Vec<String>);

impl Cell {
    fn accepts(&self, v: &str) -> bool {
        self.0.iter().any(|x| x == v)
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Cell;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a cell's text (\"32\") or a list of them ([\"32\", \"INF\"])")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cell, E> {
                Ok(Cell(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Cell, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element::<String>()? {
                    v.push(x);
                }
                if v.is_empty() {
                    return Err(serde::de::Error::invalid_length(0, &self));
                }
                Ok(Cell(v))
            }
        }
        d.deserialize_any(V)
    }
}

fn matches(m: &BTreeMap<String, Cell>, row: &BTreeMap<String, String>) -> bool {
    m.iter().all(|(k, v)| row.get(k).is_some_and(|x| v.accepts(x)))
}

/// How a row loads the server.
enum Load {
    /// All requests at once.
    Offline(u32),
    /// Poisson arrivals at this rate, this many requests.
    Rate(f64, u32),
    /// A closed loop of this many users for this long.
    Users(u32, u64),
}

/// `e`, from the scenario a row of `row` (file, line) runs as under setup `nth` of
/// `setups_text`, named where it was written: a model key that the row gives (its lengths
/// and GPUs) at the row, one the setup gives at the setup's key (`model`, `models` for the
/// LLM, `gpus` for the GPU), with the other named beside it.
fn at_setup(
    e: ValidateError,
    setups_text: &str,
    setups_file: &str,
    nth: usize,
    setup: &str,
    row: (&str, usize),
) -> ValidateError {
    let ValidateError::Setups(FabricError::Invalid { key, message, .. }) = e else { return e };
    let field = key.split_once('.').map_or(key.as_str(), |k| k.1);
    let setup_key = match field {
        "prompt-tokens" | "output-tokens" | "gpus-per-server" => {
            return csv_err(row.0, row.1, format!("setup {setup:?}: `{field}`: {message}"));
        }
        "llm" | "name" => "models",
        "gpu" => "gpus",
        _ if key.starts_with("model[") => "model",
        _ => "name",
    };
    ValidateError::Setups(FabricError::Invalid {
        file: setups_file.to_string(),
        line: meshway_fabric::scenario::locate_key(setups_text, "setup", nth, setup_key),
        key: format!(
            "setup[{}].{setup_key}{}",
            nth + 1,
            if setup_key == "model" { format!(".{field}") } else { String::new() }
        ),
        message: format!("{message} (setup {setup:?}, for row {}:{})", row.0, row.1),
    })
}

/// Runs one row as a one-server scenario; returns (output tokens/s, mean and p50 TTFT ms,
/// mean and p50 TPOT ms).
#[allow(clippy::too_many_arguments)]
fn run_row(
    setup: &InferSetup,
    llm: &str,
    gpu: &str,
    gpus: u32,
    isl: u32,
    osl: u32,
    load: &Load,
    cat: &Catalog,
    at: &str,
) -> Result<(f64, [f64; 4]), ValidateError> {
    let mut model = setup.model.clone();
    for (k, v) in [("name", "m"), ("llm", llm), ("gpu", gpu)] {
        model.insert(k.into(), toml::Value::String(v.into()));
    }
    for (k, v) in [("gpus-per-server", gpus), ("prompt-tokens", isl), ("output-tokens", osl)] {
        model.insert(k.into(), toml::Value::Integer(i64::from(v)));
    }
    let (duration_ns, region_load) = match *load {
        Load::Offline(n) => (1, format!("concurrency = {n}")),
        // Exactly the row's request count over its span at the rate, as the benchmark sends.
        Load::Rate(r, n) => ((f64::from(n) / r * 1e9).ceil() as u64 + 1, format!("rate = {r}\nrequests = {n}")),
        Load::Users(n, ns) => (ns, format!("concurrency = {n}")),
    };
    let model_toml = toml::to_string(&model).map_err(|e| csv_err(at, 0, e.to_string()))?;
    let text = format!(
        "name = \"validate\"\nseed = 1\n[inference]\npolicy = \"nearest\"\nduration = \"{duration_ns}ns\"\n\
         [[model]]\n{model_toml}\n[[site]]\nname = \"s\"\ngpus = {gpus}\naccess-hops = 0\n\
         [[region]]\nname = \"bench\"\n{region_load}\nlast-mile = \"0ns\"\nttft-p99 = \"1000s\"\n\
         fiber = {{ s = \"0m\" }}\nwan-fixed = {{ s = \"0ns\" }}\n"
    );
    let spec = meshway_infer::spec_from_text(&text, &format!("{at} (setup {})", setup.name), cat)?;
    spec.check_run_size(duration_ns).map_err(|m| {
        let (file, line) = at.rsplit_once(':').unwrap_or((at, "0"));
        csv_err(file, line.parse().unwrap_or(0), format!("setup {:?}: {m}", setup.name))
    })?;
    let r = meshway_infer::simulate(&spec, &meshway_infer::Run::new(&spec));
    let reg = &r.regions[0];
    let served = reg.served;
    let tokens = served as f64 * f64::from(osl);
    let tput = if r.end_ns > 0 { tokens / (r.end_ns as f64 * 1e-9) } else { 0.0 };
    let ms = |ns: u64| ns as f64 * 1e-6;
    Ok((tput, [ms(reg.ttft.mean_ns), ms(reg.ttft.p50_ns), ms(reg.tpot.mean_ns), ms(reg.tpot.p50_ns)]))
}

/// The most requests a row may ask for (an assumption: ten times the largest count the
/// published tables use, 30,000 at 128/128, with room).
const MAX_ROW_REQUESTS: u32 = 1_000_000;

fn num<T: std::str::FromStr>(row: &BTreeMap<String, String>, col: &str) -> Option<T> {
    row.get(col).and_then(|v| v.trim().parse().ok())
}

/// Runs the rows of `files` ((name, text) of `throughput.csv` and `latency-load.csv`)
/// against `setups_text`.
pub fn run(
    files: &[(String, String)],
    setups_text: &str,
    setups_file: &str,
    cat: &Catalog,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<InferValidation, ValidateError> {
    let setups: InferSetups = meshway_units::units_required(|| toml::from_str(setups_text))
        .map_err(|e| ValidateError::Setups(meshway_fabric::error::locate_toml_error(setups_file, setups_text, &e)))?;
    let invalid = |key: String, message: String| {
        ValidateError::Setups(meshway_fabric::FabricError::Invalid {
            file: setups_file.to_string(),
            line: None,
            key,
            message,
        })
    };
    for s in &setups.setup {
        for k in s.requests_by_length.keys() {
            let ok = k
                .split_once('/')
                .is_some_and(|(a, b)| a.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok());
            if !ok || k.contains(' ') {
                return Err(invalid(
                    format!("setup {:?}: requests-by-length", s.name),
                    format!("key {k:?} is not \"<prompt tokens>/<output tokens>\" (e.g. \"128/2048\")"),
                ));
            }
        }
    }
    let headers: BTreeMap<String, Vec<String>> = files
        .iter()
        .map(|(path, text)| {
            let base = file_name(path).to_string();
            let mut rd = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
            let h = rd.headers().map(|h| h.iter().map(str::to_string).collect()).unwrap_or_default();
            (base, h)
        })
        .collect();
    for (base, h) in &headers {
        let need: &[&str] = match base.as_str() {
            "throughput.csv" => &["model", "gpu", "num_gpus", "input_tokens", "output_tokens", "value"],
            "latency-load.csv" => &[
                "model",
                "gpu",
                "num_gpus",
                "input_tokens",
                "output_tokens",
                "load_kind",
                "load",
                "ttft_ms",
                "itl_ms",
                "throughput",
                "throughput_unit",
            ],
            _ => &[],
        };
        if let Some(c) = need.iter().find(|c| !h.iter().any(|x| x == *c)) {
            return Err(csv_err(base, 1, format!("expected a column {c:?} (the columns are {})", need.join(", "))));
        }
    }
    for (i, s) in setups.setup.iter().enumerate() {
        let at = format!("setup {:?}", s.name);
        if setups.setup[..i].iter().any(|x| x.name == s.name) {
            return Err(invalid(format!("{at}: name"), "expected a name no other [[setup]] has".into()));
        }
        if !SERVING_FILES.contains(&s.file.as_str()) {
            return Err(invalid(
                format!("{at}: file"),
                format!("{:?} is not one of {}", s.file, SERVING_FILES.join(", ")),
            ));
        }
        if let Some(col) = headers.get(&s.file).and_then(|h| s.matches.keys().find(|c| !h.contains(c))) {
            return Err(invalid(format!("{at}: match"), format!("{:?} is not a column of {}", col, s.file)));
        }
    }
    for (i, x) in setups.excluded.iter().enumerate() {
        let at = format!("excluded[{}] (file {:?})", i + 1, x.file);
        if !SERVING_FILES.contains(&x.file.as_str()) {
            return Err(invalid(format!("{at}: file"), format!("expected one of {}", SERVING_FILES.join(", "))));
        }
        if let Some(col) = headers.get(&x.file).and_then(|h| x.matches.keys().find(|c| !h.contains(c))) {
            return Err(invalid(format!("{at}: match"), format!("{:?} is not a column of {}", col, x.file)));
        }
    }
    for (i, k) in setups.known.iter().enumerate() {
        let at = format!("known[{}] (file {:?})", i + 1, k.file);
        if let Some(m) = k.metric.as_deref().filter(|m| !SERVING_METRICS.contains(m)) {
            let want = SERVING_METRICS.map(|m| format!("\"{m}\"")).join(", ");
            return Err(invalid(format!("{at}: metric"), format!("{m:?} is not one of {want}")));
        }
        if !SERVING_FILES.contains(&k.file.as_str()) {
            return Err(invalid(
                format!("{at}: file"),
                format!("expected a file name, one of {}", SERVING_FILES.join(", ")),
            ));
        }
        if let Some(col) = headers.get(&k.file).and_then(|h| k.matches.keys().find(|c| !h.contains(c))) {
            return Err(invalid(format!("{at}: match"), format!("{:?} is not a column of {}", col, k.file)));
        }
    }
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut work = Vec::new();
    for (path, text) in files {
        let base = file_name(path).to_string();
        for (line, row) in table(text, path)? {
            if let Some(x) = setups.excluded.iter().find(|x| x.file == base && matches(&x.matches, &row)) {
                skipped.push(InferSkipped { file: base.clone(), line, why: x.why.clone() });
                continue;
            }
            let (model, gpu) =
                (row.get("model").cloned().unwrap_or_default(), row.get("gpu").cloned().unwrap_or_default());
            let found = setups.setup.iter().find(|s| {
                s.file == base
                    && matches(&s.matches, &row)
                    && s.models.contains_key(&model)
                    && s.gpus.contains_key(&gpu)
            });
            match found {
                None => skipped.push(InferSkipped {
                    file: base.clone(),
                    line,
                    why: format!("no [[setup]] in {setups_file} covers it ({model} on {gpu})"),
                }),
                Some(s) => work.push((base.clone(), path.clone(), line, row, s)),
            }
        }
    }
    let total = work.len();
    for (i, (file, path, line, row, setup)) in work.into_iter().enumerate() {
        progress(i, total);
        let at = format!("{file}:{line}");
        // Errors name the file by its path, as every other validate error does.
        let bad = |what: &str| csv_err(&path, line, format!("expected {what}"));
        let model = row.get("model").cloned().unwrap_or_default();
        let gpu = row.get("gpu").cloned().unwrap_or_default();
        let gpus: u32 = num(&row, "num_gpus").ok_or_else(|| bad("num_gpus"))?;
        let isl: u32 = num(&row, "input_tokens").ok_or_else(|| bad("input_tokens"))?;
        let osl: u32 = num(&row, "output_tokens").ok_or_else(|| bad("output_tokens"))?;
        // A num_requests cell that is there but unreadable is an error, not a reason to take
        // the setup's count instead.
        let own: Option<u32> = match row.get("num_requests").map(|v| v.trim()) {
            None | Some("") => None,
            Some(v) => Some(
                v.parse()
                    .ok()
                    .filter(|n| (1..=MAX_ROW_REQUESTS).contains(n))
                    .ok_or_else(|| bad(&format!("num_requests as 1 to {MAX_ROW_REQUESTS} requests, got {v:?}")))?,
            ),
        };
        let requests: Option<u32> =
            own.or_else(|| setup.requests_by_length.get(&format!("{isl}/{osl}")).copied()).or(setup.requests);
        let closed = match row.get("load_kind").map(String::as_str) {
            None | Some("" | "rate_rps") => false,
            Some("concurrency") => true,
            Some(k) => return Err(bad(&format!("load_kind rate_rps or concurrency, got {k:?}"))),
        };
        let no_count = || {
            bad(&format!(
                "a request count: the row has no num_requests, and setup {:?} has neither a requests-by-length entry \"{isl}/{osl}\" nor requests",
                setup.name
            ))
        };
        let load = match row.get("load").map(String::as_str) {
            Some(l) if closed => {
                let n: u32 = l
                    .parse()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(|| bad(&format!("load as 1 to 1000000 concurrent users, got {l:?}")))?;
                Load::Users(n, setup.duration.map_or(120_000_000_000, |d| d.0))
            }
            None | Some("") => Load::Offline(requests.ok_or_else(no_count)?),
            Some(l) if l.eq_ignore_ascii_case("inf") => Load::Offline(requests.ok_or_else(no_count)?),
            Some(l) => {
                let r: f64 =
                    l.parse().ok().filter(|r: &f64| r.is_finite() && *r >= 1e-3 && *r <= 1e7).ok_or_else(|| {
                        bad(&format!("load as 0.001 to 10000000 requests per second or INF, got {l:?}"))
                    })?;
                let n = requests.ok_or_else(no_count)?;
                if f64::from(n) / r > 366.0 * 86_400.0 {
                    return Err(bad(&format!("{n} requests at {r} per second to take at most 366 days")));
                }
                Load::Rate(r, n)
            }
        };
        // A published figure: a blank cell is not published; anything else must be a
        // positive number.
        let figure = |col: &str| -> Result<Option<f64>, ValidateError> {
            match row.get(col).map(String::as_str) {
                None | Some("") => Ok(None),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .map(Some)
                    .ok_or_else(|| bad(&format!("{col} as a positive number or a blank cell, got {v:?}"))),
            }
        };
        let (value, throughput, ttft, itl) =
            (figure("value")?, figure("throughput")?, figure("ttft_ms")?, figure("itl_ms")?);
        let (llm, g) = (&setup.models[&model], &setup.gpus[&gpu]);
        let (tput, lat) = run_row(setup, llm, g, gpus, isl, osl, &load, cat, &at).map_err(|e| {
            let nth = setups.setup.iter().position(|x| std::ptr::eq(x, setup)).unwrap_or(0);
            at_setup(e, setups_text, setups_file, nth, &setup.name, (&file, line))
        })?;
        let mut figures = Vec::new();
        let mut fig = |metric: &'static str, published: Option<f64>, meshway: f64| {
            if let Some(p) = published.filter(|p| *p > 0.0) {
                let error = (meshway - p) / p;
                let why = (error.abs() > bound(metric))
                    .then(|| {
                        setups.known.iter().find(|k| {
                            k.file == file
                                && k.metric.as_deref().is_none_or(|m| m == metric)
                                && matches(&k.matches, &row)
                        })
                    })
                    .flatten()
                    .map(|k| k.why.clone());
                figures.push(Figure { metric, published: p, meshway, error, why });
            }
        };
        let published_tput = if file == "throughput.csv" {
            // Per-GPU rows ("tokens/sec/GPU", trtllm-bench's "tps/gpu") are compared as the
            // whole group's output.
            let per_gpu = row
                .get("metric")
                .map(|m| m.to_ascii_lowercase())
                .is_some_and(|m| m.contains("tokens/sec/gpu") || m.contains("tokens/s/gpu") || m.contains("tps/gpu"));
            value.map(|v| if per_gpu { v * f64::from(gpus) } else { v })
        } else if row.get("throughput_unit").is_some_and(|u| u.starts_with("output tokens/s")) {
            throughput
        } else {
            None
        };
        fig("output tokens/s", published_tput, tput);
        let stat = |col: &str| row.get(col).map(String::as_str) == Some("p50");
        fig("ttft ms", ttft, if stat("ttft_stat") { lat[1] } else { lat[0] });
        fig("itl ms", itl, if stat("itl_stat") { lat[3] } else { lat[2] });
        rows.push(InferOutcome {
            file,
            line,
            setup: setup.name.clone(),
            model,
            gpu,
            gpus,
            input_tokens: isl,
            output_tokens: osl,
            load: match load {
                Load::Offline(n) => format!("offline {n}"),
                Load::Rate(r, _) => format!("{r} req/s"),
                Load::Users(n, _) => format!("{n} users"),
            },
            figures,
        });
    }
    let mut keys: Vec<(String, String, &'static str)> = Vec::new();
    for r in &rows {
        for f in &r.figures {
            let k = (r.setup.clone(), r.model.clone(), f.metric);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let groups = keys
        .into_iter()
        .map(|(setup, model, metric)| {
            let mut e: Vec<f64> = rows
                .iter()
                .filter(|r| r.setup == setup && r.model == model)
                .flat_map(|r| r.figures.iter().filter(|f| f.metric == metric).map(|f| f.error.abs()))
                .collect();
            let within = e.iter().filter(|x| **x <= bound(metric)).count() as f64 / e.len().max(1) as f64;
            InferGroup {
                rows: e.len(),
                max_abs_error: e.iter().copied().fold(0.0, f64::max),
                median_abs_error: median(&mut e),
                within_bound: within,
                setup,
                model,
                metric,
            }
        })
        .collect();
    let setups = setups
        .setup
        .iter()
        .filter(|s| rows.iter().any(|r| r.setup == s.name))
        .map(|s| SetupNote {
            name: s.name.clone(),
            description: s.description.clone(),
            model: toml::to_string(&s.model).unwrap_or_default().trim().replace('\n', ", "),
            source: s.source.clone(),
            assumption: s.assumption.clone(),
        })
        .collect();
    Ok(InferValidation { rows, groups, skipped, setups, wan: Vec::new(), wan_groups: Vec::new() })
}
