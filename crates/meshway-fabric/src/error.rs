//! Errors of the fabric crate. Messages are lowercase, name the file, line and key where
//! known, and say what was expected.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FabricError {
    /// The file is not valid TOML or does not match the schema. `key` is the path of the
    /// offending key (`workload[2].size`, `fabric.kind`) when the position names one.
    #[error("{file}:{line}:{col}: {}{message}", key.as_ref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
    Syntax { file: String, line: usize, col: usize, key: Option<String>, message: String },
    /// A value is well-formed but not acceptable.
    #[error("{file}{}: `{key}`: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid { file: String, line: Option<usize>, key: String, message: String },
    /// A switch would need more ports than its radix.
    #[error("{file}: {switch} needs {needed} ports but its radix is {radix}{hint}")]
    PortsExceeded { file: String, switch: String, needed: u64, radix: u32, hint: String },
    #[error("{file}: catalog entry {entry}: {message}")]
    Catalog { file: String, entry: String, message: String },
    /// A fabric too large to build in memory.
    #[error("{file}: {message}")]
    TooLarge { file: String, message: String },
}

/// Line and column (1-based) of byte offset `pos` in `text`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text[..text.floor_char_boundary_compat(pos)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

trait FloorBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}
impl FloorBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// Turns a TOML deserialization error into [`FabricError::Syntax`] with the line, column and
/// key path, its message in plain words (no Rust type names) and a "did you mean" for
/// misspelled keys and values.
pub fn locate_toml_error(file: &str, text: &str, e: &toml::de::Error) -> FabricError {
    let span = e.span();
    let (line, col) = span.clone().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    let key = span.and_then(|s| key_path_at(text, s.start));
    let message = humanize(e.message().trim());
    FabricError::Syntax { file: file.to_string(), line, col, key, message }
}

/// How many valid keys or values an error lists at most.
const LIST_AT_MOST: usize = 6;

/// Rewrites serde's messages for people: "unknown field" as an unknown key with the closest
/// few valid ones, "unknown variant" as an unknown value with a suggestion, and Rust type
/// names (`u32`, `f64`) as what they mean.
pub fn humanize(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((unknown, expected)) = rest.split_once('`') {
            return unknown_choice("key", unknown, &backticked(expected));
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        if let Some((unknown, expected)) = rest.split_once('`') {
            return unknown_choice("value", unknown, &backticked(expected));
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        if let Some((name, _)) = rest.split_once('`') {
            return format!("missing key `{name}`");
        }
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some((got, expected)) = rest.rsplit_once(", expected ") {
                return format!("expected {}, got {}", plain_expected(expected), plain_got(got));
            }
        }
    }
    msg.to_string()
}

/// The names in backticks of serde's "expected one of `a`, `b`".
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// "unknown key `x`; did you mean `y`? (expected one of a, b, ...)": at most
/// [`LIST_AT_MOST`] choices, the closest first.
fn unknown_choice(what: &str, unknown: &str, choices: &[&str]) -> String {
    let mut ranked: Vec<(usize, usize, &str)> =
        choices.iter().enumerate().map(|(i, c)| (edit_distance(unknown, c), i, *c)).collect();
    // Few choices: keep the order the schema gives them; many: the closest first.
    if choices.len() > LIST_AT_MOST {
        ranked.sort();
    }
    let shown: Vec<&str> = ranked.iter().take(LIST_AT_MOST).map(|r| r.2).collect();
    let more = if choices.len() > LIST_AT_MOST { format!(", ... ({} in all)", choices.len()) } else { String::new() };
    let hint = closest(unknown, choices).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default();
    let quoted = if what == "value" { format!("\"{unknown}\"") } else { format!("`{unknown}`") };
    format!("unknown {what} {quoted}: expected one of {}{more}{hint}", shown.join(", "))
}

fn plain_expected(e: &str) -> String {
    let range = |max: &str| format!("a whole number from 0 to {max}");
    match e {
        "u8" => range("255"),
        "u16" => range("65535"),
        "u32" => range("4294967295"),
        "u64" | "usize" => "a whole number of 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a string" | "a borrowed string" => "text in quotes".into(),
        "a sequence" => "a list such as [1, 2]".into(),
        "a map" => "a table".into(),
        _ if e.starts_with("struct ") => "a table".into(),
        _ if e.starts_with("enum ") => "one of the listed values".into(),
        _ => e.to_string(),
    }
}

fn plain_got(g: &str) -> String {
    let inner = |s: &str| s.split('`').nth(1).map(str::to_string);
    if let Some(rest) = g.strip_prefix("string ") {
        return rest.to_string();
    }
    if let Some(rest) = g.strip_prefix("floating point ") {
        // 1e300 as 1e300, not its 301 digits.
        let text = inner(rest).unwrap_or_else(|| rest.to_string());
        return text.parse::<f64>().map_or(text, meshway_units::shown);
    }
    for p in ["integer ", "boolean "] {
        if let Some(rest) = g.strip_prefix(p) {
            return inner(rest).unwrap_or_else(|| rest.to_string());
        }
    }
    match g {
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        _ => g.to_string(),
    }
}

/// The key path (`workload[2].size`, `site[1].fabric.nic`, `fabric`) of the value or key at
/// byte `pos` of a TOML document, from the table headers above it and the key on its line.
/// Arrays of tables are numbered from 1, as in every other message. A best effort on the
/// text: `None` when nothing names a key.
pub fn key_path_at(text: &str, pos: usize) -> Option<String> {
    let pos = text.floor_char_boundary_compat(pos.min(text.len()));
    let (line_start, target) = {
        let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
        (start, text[..start].matches('\n').count())
    };
    let _ = line_start;
    let lines: Vec<&str> = text.lines().collect();
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut path: Vec<String> = Vec::new();
    let mut header_line = None;
    for (i, raw) in lines.iter().enumerate().take(target + 1) {
        let t = raw.split('#').next().unwrap_or("").trim();
        let (name, array) = if let Some(h) = t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            (h.trim(), true)
        } else if let Some(h) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            (h.trim(), false)
        } else {
            continue;
        };
        header_line = Some(i);
        let parts: Vec<&str> = name.split('.').map(|p| p.trim().trim_matches('"')).collect();
        let mut full = String::new();
        path.clear();
        for (j, p) in parts.iter().enumerate() {
            if !full.is_empty() {
                full.push('.');
            }
            full.push_str(p);
            let last = j + 1 == parts.len();
            if last && array {
                let n = {
                    let c = counts.entry(full.clone()).or_insert(0);
                    *c += 1;
                    *c
                };
                // A new element of an array of tables starts its sub-arrays afresh.
                let prefix = format!("{full}.");
                counts.retain(|k, _| !k.starts_with(&prefix));
                path.push(format!("{p}[{n}]"));
            } else if let Some(n) = counts.get(&full) {
                path.push(format!("{p}[{n}]"));
            } else {
                path.push(p.to_string());
            }
        }
    }
    // The key: on the target line, or the nearest line above it (inside the same table) that
    // starts a `key = value` (values may span lines).
    let lo = header_line.map_or(0, |h| h + 1);
    let key = (lo..=target.min(lines.len().saturating_sub(1))).rev().find_map(|i| {
        let t = lines[i].trim_start();
        let (k, _) = t.split_once('=')?;
        let k = k.trim();
        let ok = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_.\" ".contains(c));
        ok.then(|| k.split('.').map(|p| p.trim().trim_matches('"')).collect::<Vec<_>>().join("."))
    });
    if header_line == Some(target) {
        return (!path.is_empty()).then(|| path.join("."));
    }
    if let Some(k) = key {
        path.push(k);
    }
    (!path.is_empty()).then(|| path.join("."))
}

/// The candidate closest to `word` by edit distance, if close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(closest("leaf-radx", &["leaf-radix", "spine-radix", "gpus"]), Some("leaf-radix"));
        assert_eq!(closest("zzzzzz", &["leaf-radix", "gpus"]), None);
        assert_eq!(
            humanize("unknown field `gpu`, expected one of `kind`, `gpus`"),
            "unknown key `gpu`: expected one of kind, gpus; did you mean `gpus`?"
        );
        assert_eq!(
            humanize("unknown variant `leafspine`, expected one of `three-tier`, `leaf-spine`"),
            "unknown value \"leafspine\": expected one of three-tier, leaf-spine; did you mean `leaf-spine`?"
        );
        assert_eq!(
            humanize("invalid value: integer `-64`, expected u32"),
            "expected a whole number from 0 to 4294967295, got -64"
        );
        assert_eq!(
            humanize("invalid type: string \"x\", expected u32"),
            "expected a whole number from 0 to 4294967295, got \"x\""
        );
        assert_eq!(
            humanize("invalid type: floating point `1.5`, expected a boolean"),
            "expected true or false, got 1.5"
        );
        let huge = format!("invalid type: floating point `1{}.0`, expected u32", "0".repeat(300));
        assert_eq!(humanize(&huge), "expected a whole number from 0 to 4294967295, got 1e300");
        assert_eq!(humanize("missing field `kind`"), "missing key `kind`");
        let many: Vec<String> = (0..20).map(|i| format!("`key-{i}`")).collect();
        let m = humanize(&format!("unknown field `key-17x`, expected one of {}", many.join(", ")));
        assert!(m.starts_with("unknown key `key-17x`: expected one of key-17, "), "{m}");
        assert!(m.contains("... (20 in all)") && m.ends_with("did you mean `key-17`?"), "{m}");
    }

    #[test]
    fn key_paths() {
        let t = "name = \"x\"\n[fabric]\nkind = \"leaf-spine\"\ngpus = -64\n[[workload]]\nkind = \"a\"\n[[workload]]\nsize = \"1GiBs\"\nranks = [\n  0,\n  \"q\",\n]\n[[site]]\nname = \"a\"\n[[site]]\n[site.fabric]\nnic = \"400G\"\n";
        let at = |needle: &str| key_path_at(t, t.find(needle).unwrap());
        assert_eq!(at("\"x\"").as_deref(), Some("name"));
        assert_eq!(at("-64").as_deref(), Some("fabric.gpus"));
        assert_eq!(at("\"a\"\n[[work").as_deref(), Some("workload[1].kind"));
        assert_eq!(at("\"1GiBs\"").as_deref(), Some("workload[2].size"));
        assert_eq!(at("\"q\"").as_deref(), Some("workload[2].ranks"));
        assert_eq!(at("\"400G\"").as_deref(), Some("site[2].fabric.nic"));
        assert_eq!(at("[fabric]").as_deref(), Some("fabric"));
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_col("a\nbc\nd", 0), (1, 1));
        assert_eq!(line_col("é\n", 1), (1, 1));
    }
}
