//! A minimal aligned text table: first column left-aligned, the rest right-aligned.

pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Table {
        Table { head: head.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    /// Adds a row. Control characters in a cell (from names in the user's files: a newline
    /// would break the table, an escape sequence reach the terminal) are shown escaped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(printable).collect());
    }

    pub fn render(&self) -> String {
        let cols = self.head.len();
        let mut w = vec![0usize; cols];
        for r in std::iter::once(&self.head).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(cols) {
                w[i] = w[i].max(columns(c));
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.head).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in w.iter().enumerate() {
                let c = r.get(i).map(String::as_str).unwrap_or("");
                let pad = width - columns(c);
                if i == 0 {
                    line.push_str(c);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str("  ");
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Terminal columns `s` takes (a wide CJK character or emoji two, a combining mark none).
pub fn columns(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// `s` with its control characters escaped as Rust writes them (`\n`, `\u{1b}`).
fn printable(s: String) -> String {
    if s.chars().any(char::is_control) {
        s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns() {
        let mut t = super::Table::new(&["a", "bb"]);
        t.row(vec!["long".into(), "1".into()]);
        assert_eq!(t.render(), "a     bb\nlong   1\n");
    }

    /// Cells are padded by the columns a terminal gives them: 東京 takes four, the é of
    /// "e" + U+0301 one.
    #[test]
    fn wide_and_combining_characters_align() {
        let mut t = super::Table::new(&["region", "p99"]);
        t.row(vec!["東京".into(), "1.0ms".into()]);
        t.row(vec!["Qu\u{e9}bec".into(), "2.0ms".into()]);
        t.row(vec!["Que\u{301}bec".into(), "3.0ms".into()]);
        assert_eq!(t.render(), "region    p99\n東京    1.0ms\nQu\u{e9}bec  2.0ms\nQue\u{301}bec  3.0ms\n");
    }

    #[test]
    fn control_characters_in_cells_are_escaped() {
        let mut t = super::Table::new(&["job"]);
        t.row(vec!["a\nb\u{1b}[31m".into()]);
        assert_eq!(t.render(), "job\na\\nb\\u{1b}[31m\n");
    }
}
