//! Loading a scenario file: parse into [`ScenarioConfig`], then validate and build.

use crate::catalog::Catalog;
use crate::config::{ScenarioConfig, TransportConfig, TransportKind};
use crate::error::{locate_toml_error, FabricError};
use meshway_units::Bytes;

/// Where a value came from, to name file, line and key in errors.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    pub file: &'a str,
    pub text: &'a str,
    /// The TOML table holding the keys being checked ("fabric", "site.fabric", "dci").
    pub section: String,
    /// Which occurrence of an array-of-tables section ([[site]] number n), 0 otherwise.
    pub nth: usize,
    /// Prefix for key names in messages ("site[1].fabric").
    pub prefix: String,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a str, text: &'a str, section: &str, nth: usize, prefix: &str) -> Ctx<'a> {
        Ctx { file, text, section: section.to_string(), nth, prefix: prefix.to_string() }
    }

    /// An [`FabricError::Invalid`] for `key` of this section, with its line when found.
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> FabricError {
        FabricError::Invalid {
            file: self.file.to_string(),
            line: locate_key(self.text, &self.section, self.nth, key),
            key: if self.prefix.is_empty() { key.to_string() } else { format!("{}.{key}", self.prefix) },
            message: message.into(),
        }
    }

    pub fn ports_exceeded(&self, switch: String, needed: u64, radix: u32, hint: &str) -> FabricError {
        FabricError::PortsExceeded { file: self.file.to_string(), switch, needed, radix, hint: hint.to_string() }
    }
}

/// Finds the 1-based line of `key` inside the `nth` occurrence of table `section`
/// (`[section]` or `[[section]]`; for "site.fabric", the table after the nth `[[site]]`).
pub fn locate_key(text: &str, section: &str, nth: usize, key: &str) -> Option<usize> {
    let (outer, inner) = match section.split_once('.') {
        Some((o, i)) => (o, Some(i)),
        None => (section, None),
    };
    let header = |l: &str| -> Option<String> {
        let t = l.trim();
        let t = t.split('#').next().unwrap_or("").trim();
        t.strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .or_else(|| t.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
            .map(|h| h.trim().to_string())
    };
    let mut seen = 0usize;
    let mut in_outer = false;
    let mut in_target = false;
    for (i, line) in text.lines().enumerate() {
        if let Some(h) = header(line) {
            if h == outer {
                in_outer = seen == nth;
                seen += 1;
                in_target = in_outer && inner.is_none();
            } else if let Some(inner) = inner {
                in_target = in_outer && h == format!("{outer}.{inner}");
            } else {
                in_target = false;
            }
            continue;
        }
        if in_target {
            let t = line.trim_start();
            if let Some(rest) = t.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return Some(i + 1);
                }
            }
        }
    }
    // Fall back to the section header for keys that were left out.
    if key.is_empty() {
        return None;
    }
    locate_section(text, section, nth)
}

fn locate_section(text: &str, section: &str, nth: usize) -> Option<usize> {
    let outer = section.split('.').next().unwrap_or(section);
    let mut seen = 0;
    for (i, line) in text.lines().enumerate() {
        let t = line.split('#').next().unwrap_or("").trim();
        if t == format!("[{outer}]") || t == format!("[[{outer}]]") {
            if seen == nth {
                return Some(i + 1);
            }
            seen += 1;
        }
    }
    None
}

/// The transport as the planner needs it.
#[derive(Debug, Clone)]
pub struct Transport {
    pub config: TransportConfig,
    pub mtu: Bytes,
    pub lossless: bool,
}

/// A parsed scenario with its source text, ready to build.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub file: String,
    pub text: String,
    pub config: ScenarioConfig,
    pub name: String,
}

/// A key a scenario does not take but the catalog's table of the same name does (`[simulation]
/// nccl-buffer`, which the docs name): says where it goes.
fn catalog_key_hint(path: &str, message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown key `")?;
    let (unknown, _) = rest.split_once('`')?;
    let table = path.strip_suffix(unknown)?.strip_suffix('.')?;
    let catalog: toml::Table = toml::from_str(crate::catalog::DEFAULT_CATALOG).ok()?;
    catalog.get(table)?.as_table()?.contains_key(unknown).then(|| {
        format!(" (`{unknown}` is a catalog key: give it under [{table}] in a file passed with --catalog FILE)")
    })
}

impl Scenario {
    /// Parses `text` (named `file` in messages). Never panics.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, FabricError> {
        let config: ScenarioConfig = meshway_units::units_required(|| toml::from_str(text)).map_err(|e| {
            let mut err = locate_toml_error(file, text, &e);
            if let FabricError::Syntax { key: Some(path), message, .. } = &mut err {
                if let Some(hint) = catalog_key_hint(path, message) {
                    message.push_str(&hint);
                }
            }
            err
        })?;
        let ctx = Ctx::new(file, text, "", 0, "");
        match (&config.fabric, config.site.is_empty()) {
            (None, true) if !config.model.is_empty() || !config.region.is_empty() => {
                return Err(FabricError::Invalid {
                    file: file.to_string(),
                    line: None,
                    key: "site".into(),
                    message:
                        "no [[site]] tables: an inference scenario ([[model]], [[region]]) needs sites to serve from"
                            .into(),
                })
            }
            (None, true) => {
                return Err(FabricError::Invalid {
                    file: file.to_string(),
                    line: None,
                    key: "fabric".into(),
                    message: "missing: expected a [fabric] table, or [[site]] tables joined by [[dci]] links".into(),
                })
            }
            (Some(_), false) => {
                return Err(ctx.invalid("site", "give either one [fabric] or several [[site]] tables, not both"))
            }
            _ => {}
        }
        // The name heads every report and page: a control character in it (an escape
        // sequence, a NUL) would reach the terminal or break the HTML.
        if let Some(why) = config.name.as_deref().and_then(meshway_units::unprintable) {
            return Err(ctx.invalid("name", format!("expected printable text, got {why}")));
        }
        // So do workload names.
        for (i, w) in config.workload.iter().enumerate() {
            if let Some(why) = w.name.as_deref().and_then(meshway_units::unprintable) {
                let ctx = Ctx::new(file, text, "workload", i, &format!("workload[{}]", i + 1));
                return Err(ctx.invalid("name", format!("expected printable text, got {why}")));
            }
        }
        let name = config.name.clone().unwrap_or_else(|| {
            std::path::Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or("scenario").to_string()
        });
        Ok(Scenario { file: file.to_string(), text: text.to_string(), config, name })
    }

    pub fn transport(&self, catalog: &Catalog) -> Result<Transport, FabricError> {
        let config = self.config.transport.clone().unwrap_or_default();
        // The transport profile's MTU, as `simulate` takes it (EFA's 8 KiB, TCP's jumbo frames):
        // `plan` sized headroom and latency with the catalog's default 4096 B.
        let profile = catalog.transport_profile(config.kind.name()).map(|p| p.mtu);
        let mtu = config.mtu.or(profile).unwrap_or(catalog.mtu());
        if mtu.0 < 256 || mtu.0 > 65_536 {
            let ctx = Ctx::new(&self.file, &self.text, "transport", 0, "transport");
            return Err(ctx.invalid("mtu", format!("expected 256 to 65536 bytes, got {}", mtu.0)));
        }
        if config.kind == TransportKind::Efa && config.lossless == Some(true) {
            let ctx = Ctx::new(&self.file, &self.text, "transport", 0, "transport");
            return Err(ctx.invalid(
                "lossless",
                "efa is not lossless: its NIC resends lost packets, with no PFC in the fabric; a lossless fabric is roce (PFC) or infiniband (credits)",
            ));
        }
        let lossless = config
            .lossless
            .unwrap_or(!matches!(config.kind, TransportKind::Tcp | TransportKind::Ndp | TransportKind::Efa));
        Ok(Transport { config, mtu, lossless })
    }
}
