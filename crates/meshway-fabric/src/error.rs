//! Errors of the fabric crate. Messages are lowercase, name the file, line and key where
//! known, and say what was expected.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FabricError {
    /// The file is not valid TOML or does not match the schema.
    #[error("{file}:{line}:{col}: {message}")]
    Syntax { file: String, line: usize, col: usize, message: String },
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

/// Turns a TOML deserialization error into [`FabricError::Syntax`] with the line and column,
/// and a "did you mean" for unknown keys.
pub fn locate_toml_error(file: &str, text: &str, e: &toml::de::Error) -> FabricError {
    let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    let mut message = e.message().trim().to_string();
    if let Some(s) = suggest_for_unknown_field(&message) {
        message.push_str(&s);
    }
    FabricError::Syntax { file: file.to_string(), line, col, message }
}

/// Given serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`"), returns
/// "; did you mean `a`?" for the closest key within a small edit distance.
fn suggest_for_unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    closest(unknown, &candidates).map(|c| format!("; did you mean `{c}`?"))
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
            suggest_for_unknown_field("unknown field `gpu`, expected one of `kind`, `gpus`").as_deref(),
            Some("; did you mean `gpus`?")
        );
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_col("a\nbc\nd", 0), (1, 1));
        assert_eq!(line_col("é\n", 1), (1, 1));
    }
}
