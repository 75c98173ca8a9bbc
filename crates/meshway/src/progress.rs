//! A progress line on stderr for runs longer than about two seconds (terminals only). A
//! ticker thread redraws it every half second, so it moves while the run sets up and inside
//! long steps that report nothing.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The line for (done, total, what, seconds since the start); it starts with `\r`.
pub type Line<'a> = dyn Fn(u64, u64, &str, f64) -> String + Sync + 'a;

pub struct Progress<'a> {
    #[allow(clippy::disallowed_types)]
    start: std::time::Instant,
    tty: bool,
    line: &'a Line<'a>,
    last: Mutex<(u64, u64, String)>,
    /// Width of the last line drawn, to blank what a shorter one leaves.
    width: Mutex<usize>,
    shown: AtomicBool,
    done: AtomicBool,
}

impl<'a> Progress<'a> {
    #[allow(clippy::disallowed_methods)]
    pub fn new(line: &'a Line<'a>) -> Progress<'a> {
        Progress {
            start: std::time::Instant::now(),
            tty: std::io::stderr().is_terminal(),
            line,
            last: Mutex::new((0, 0, String::new())),
            width: Mutex::new(0),
            shown: AtomicBool::new(false),
            done: AtomicBool::new(false),
        }
    }

    pub fn update(&self, done: u64, total: u64, what: &str) {
        if let Ok(mut l) = self.last.lock() {
            l.0 = done;
            l.1 = total;
            if l.2 != what {
                l.2 = what.to_string();
            }
        }
    }

    fn draw(&self) {
        let secs = self.start.elapsed().as_secs_f64();
        if !self.tty || secs < 2.0 {
            return;
        }
        let line = match self.last.lock() {
            Ok(l) => (self.line)(l.0, l.1, &l.2, secs),
            Err(_) => return,
        };
        self.shown.store(true, Ordering::Relaxed);
        let line = one_row(&line);
        let n = line.chars().count();
        let pad = self.width.lock().map(|mut w| std::mem::replace(&mut *w, n).saturating_sub(n)).unwrap_or(0);
        eprint!("{line}{}", " ".repeat(pad));
        let _ = std::io::stderr().flush();
    }

    /// Runs `f` with the progress line drawn beside it, and ends the line after.
    pub fn run<T>(&self, f: impl FnOnce(&Self) -> T) -> T {
        std::thread::scope(|sc| {
            let ticker = self.tty.then(|| {
                sc.spawn(|| {
                    while !self.done.load(Ordering::Relaxed) {
                        std::thread::park_timeout(std::time::Duration::from_millis(500));
                        if !self.done.load(Ordering::Relaxed) {
                            self.draw();
                        }
                    }
                })
            });
            let r = f(self);
            self.done.store(true, Ordering::Relaxed);
            // Woken at once (a run ended up to half a second late), and joined before the
            // line is ended, so a line it was drawing cannot come after the newline.
            if let Some(t) = ticker {
                t.thread().unpark();
                let _ = t.join();
            }
            // Blank the last line (it would stay on the terminal, stale, above the report).
            if self.shown.load(Ordering::Relaxed) {
                let w = self.width.lock().map(|w| *w).unwrap_or(0);
                eprint!("\r{}\r", " ".repeat(w));
                let _ = std::io::stderr().flush();
            }
            r
        })
    }
}

/// `line` cut to stderr's terminal width: wider, it would wrap and each redraw add a row.
pub fn one_row(line: &str) -> String {
    clip(line, terminal_size::terminal_size_of(std::io::stderr()).map(|(w, _)| usize::from(w.0)))
}

/// `line` (which starts with `\r`) cut to fit a terminal of `cols` columns, one short of
/// the last so the cursor does not wrap; unchanged when the width is not known.
fn clip(line: &str, cols: Option<usize>) -> String {
    match cols.filter(|&c| c > 1) {
        Some(c) if line.trim_start_matches('\r').chars().count() > c - 1 => {
            let cr = if line.starts_with('\r') { "\r" } else { "" };
            let text: String = line.trim_start_matches('\r').chars().take(c - 1).collect();
            format!("{cr}{text}")
        }
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn a_line_wider_than_the_terminal_is_cut_to_one_row() {
        let line = "\r  place: simulation 3 of 21 (optimized, failure of site eu-north)  12s";
        assert_eq!(clip(line, Some(40)), "\r  place: simulation 3 of 21 (optimized,");
        assert_eq!(clip(line, Some(40)).chars().count(), 40);
        assert_eq!(clip(line, Some(200)), line);
        assert_eq!(clip(line, None), line);
        assert_eq!(clip(line, Some(0)), line, "a width of 0 is not known");
        assert_eq!(clip("\r\u{e9}t\u{e9}", Some(3)), "\r\u{e9}t", "cut by characters, not bytes");
    }
}
