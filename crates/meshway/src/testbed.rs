//! `meshway testbed`: flags and glue over the meshway-testbed library (the pure plan, the
//! apply and teardown, the measured flows) and meshway-report's tables.

use anyhow::{anyhow, bail, Context, Result};
use meshway_fabric::Catalog;
use std::path::PathBuf;

pub const HELP: &str = "Examples (as root):
  meshway testbed up examples/testbed-2x2.toml --scale 1:1000
  meshway testbed run examples/testbed-2x2.toml --timeout 10min
  meshway testbed verify examples/testbed-2x2.toml --json
  meshway testbed down

Builds the scenario's fabric from network namespaces (one per GPU host and per
switch, a veth pair per link, multipath routes hashed on L4 like ECMP
switches, tbf rate limits scaled down: 400Gbps at 1:1000 is 400Mbps), runs its
workloads as real TCP between the host namespaces, and compares each flow's
measured completion time with the simulator's prediction for the same scaled
fabric on the paths the kernel chose. Traffic stays inside the namespaces.";

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Build the namespaces, links, addresses, routes and rate limits.
    Up {
        file: PathBuf,
        /// Rate scale, "1:1000" divides every link rate by 1,000.
        #[arg(long, default_value = "1:1000")]
        scale: String,
        #[command(flatten)]
        opts: Opts,
    },
    /// Run the scenario's workloads as TCP flows and print each flow's measurements.
    Run {
        file: PathBuf,
        /// Print each flow's measurements as JSON.
        #[arg(long)]
        json: bool,
        /// Longest the whole run may take; its workers stop there and the run fails. A run
        /// the simulator expects to take longer is refused before it starts.
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        timeout: meshway_units::Nanos,
        /// Start even when the simulator expects the run to outlast --timeout.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        opts: Opts,
    },
    /// Run the workloads, simulate them on the scaled fabric, print measured vs predicted.
    Verify {
        file: PathBuf,
        /// Print measured against predicted as JSON.
        #[arg(long)]
        json: bool,
        /// Longest the whole run may take; its workers stop there and the run fails. A run
        /// the simulator expects to take longer is refused before it starts.
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        timeout: meshway_units::Nanos,
        /// Start even when the simulator expects the run to outlast --timeout.
        #[arg(long)]
        force: bool,
        /// Also write a self-contained HTML page: measured against predicted per flow.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        #[command(flatten)]
        opts: Opts,
    },
    /// Remove everything `up` created (idempotent; also after a crash).
    Down {
        #[command(flatten)]
        opts: Opts,
    },
    /// Internal: one end of a measured TCP flow, run inside a namespace.
    #[command(hide = true)]
    Flow {
        #[arg(long)]
        recv: Option<u16>,
        #[arg(long)]
        send: Option<String>,
        #[arg(long, default_value_t = 0)]
        bytes: u64,
        /// The `run` that started this worker: the worker ends when it is gone.
        #[arg(long)]
        parent: Option<u32>,
        /// When the run's time is up (microseconds since the Unix epoch; 0: no limit).
        #[arg(long, default_value_t = 0)]
        until_us: u64,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct Opts {
    /// Name prefix of everything created (namespaces, interfaces), 2 to 6 letters or digits.
    #[arg(long, default_value = "mw")]
    pub prefix: String,
    /// State file recording what was created (default: the one the last `up` with this prefix
    /// was given, else /run/meshway/testbed-PREFIX.json). It must be yours and writable by no
    /// one else, so another user cannot make root act on a file they planted.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

/// Where testbed state lives unless --state names a file: a directory only its owner (root)
/// can write, unlike the shared temporary directory.
const STATE_DIR: &str = "/run/meshway";

impl Opts {
    /// The state directory, created private (0700) when missing, and refused when another
    /// user could have changed it.
    fn state_dir() -> Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let d = PathBuf::from(STATE_DIR);
        if std::fs::symlink_metadata(&d).is_err() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .with_context(|| format!("cannot create {STATE_DIR} (the testbed needs root)"))?;
        }
        meshway_testbed::apply::check_owned(&d)?;
        Ok(d)
    }

    /// Where the last `up` with this prefix put its state file (when it was given one).
    fn remembered(&self) -> Result<PathBuf> {
        Ok(Self::state_dir()?.join(format!("testbed-{}.last", self.prefix)))
    }

    /// The state file used when neither --state nor a note names one.
    fn default_state(&self) -> Result<PathBuf> {
        Ok(Self::state_dir()?.join(format!("testbed-{}.json", self.prefix)))
    }

    /// The state file the last `up` with this prefix noted, if there is a note (its own).
    fn noted(&self) -> Result<Option<PathBuf>> {
        let last = self.remembered()?;
        if std::fs::symlink_metadata(&last).is_err() {
            return Ok(None);
        }
        meshway_testbed::apply::check_owned(&last)?;
        Ok(Some(PathBuf::from(std::fs::read_to_string(&last)?.trim())))
    }

    /// The state file: `--state`, else the one the last `up` with this prefix used (when the
    /// note of it is ours and unchanged by others), else the default for the prefix.
    fn state_path(&self) -> Result<PathBuf> {
        if let Some(s) = &self.state {
            return Ok(s.clone());
        }
        let last = self.remembered()?;
        if std::fs::symlink_metadata(&last).is_ok() {
            meshway_testbed::apply::check_owned(&last)?;
            let p = PathBuf::from(std::fs::read_to_string(&last)?.trim());
            if std::fs::symlink_metadata(&p).is_ok() {
                return Ok(p);
            }
        }
        self.default_state()
    }
}

/// `p` with its directory made absolute (the file itself need not exist), as notes record it.
fn absolute(p: &std::path::Path) -> PathBuf {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::canonicalize(&dir).map(|d| d.join(p.file_name().unwrap_or_default())).unwrap_or_else(|_| p.to_path_buf())
}

/// `--timeout`: more than 0 and at most a week (an assumption, far beyond a testbed run).
/// With `--force`, the run gets the timeout but no check of the simulator's expectation
/// against it: [`meshway_testbed::Timeout::Force`].
fn check_timeout(t: meshway_units::Nanos, force: bool) -> Result<meshway_testbed::Timeout> {
    if t == meshway_units::Nanos::ZERO || t.0 > 7 * 86_400 * 1_000_000_000 {
        bail!("--timeout: expected more than 0 and at most 168h, got {t}");
    }
    let d = std::time::Duration::from_nanos(t.0);
    Ok(if force { meshway_testbed::Timeout::Force(d) } else { meshway_testbed::Timeout::Checked(d) })
}

/// A duration to read at a glance: "350 ms", "12.5 s", "14 min", "2.3 h".
fn about(us: u64) -> String {
    match us {
        0..=999_999 => format!("{} ms", us.div_ceil(1000)),
        1_000_000..=119_999_999 => format!("{:.1} s", us as f64 / 1e6),
        120_000_000..=7_199_999_999 => format!("{:.0} min", us as f64 / 60e6),
        _ => format!("{:.1} h", us as f64 / 3600e6),
    }
}

/// Progress of a run on standard error: what the simulator expects before it starts, then
/// the phases done, at most one line every 5 s (and the last when any was shown).
#[derive(Default)]
struct Shown {
    last_us: u64,
}

impl Shown {
    fn progress(&mut self, p: meshway_testbed::RunProgress) {
        use meshway_testbed::RunProgress;
        match p {
            RunProgress::Planned { phases, flows, expected_us } => {
                let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
                eprintln!(
                    "running {} in {}; the simulator expects about {} of transfers (TCP and starting {} add to it)",
                    plural(flows, "flow"),
                    plural(phases as usize, "phase"),
                    about(expected_us),
                    plural(flows * 2, "worker")
                );
            }
            RunProgress::Phase { done, phases, elapsed_us, left_us } => {
                let last = done == phases;
                if elapsed_us >= self.last_us + 5_000_000 || last && self.last_us > 0 {
                    self.last_us = elapsed_us;
                    if last {
                        eprintln!("phase {done} of {phases} done after {}", about(elapsed_us));
                    } else {
                        eprintln!(
                            "phase {done} of {phases} done after {}; about {} to go",
                            about(elapsed_us),
                            about(left_us)
                        );
                    }
                }
            }
        }
    }
}

fn exe() -> Result<String> {
    let exe = std::env::current_exe()?;
    Ok(exe.to_str().ok_or_else(|| anyhow!("non-UTF-8 executable path"))?.to_string())
}

/// Runs one `meshway testbed` verb; returns what to print. `catalog` is the `--catalog`
/// file `cat` was read from, if any (an input a written page must not replace).
pub fn run(cmd: Cmd, cat: &Catalog, catalog: &Option<PathBuf>) -> Result<String> {
    use meshway_report::testbed as text;
    Ok(match cmd {
        Cmd::Up { file, scale, opts } => {
            meshway_testbed::check_prefix(&opts.prefix)?;
            let scale = meshway_testbed::parse_scale(&scale)?;
            let state = opts.state_path()?;
            // Later verbs find this state file without --state: noted once it is written,
            // before anything is built, so a `down` after an `up` killed half-way finds it.
            let mut note = || -> std::result::Result<(), meshway_testbed::TestbedError> {
                if let Some(p) = &opts.state {
                    let last = opts.remembered().map_err(|e| std::io::Error::other(e.to_string()))?;
                    let _ = std::fs::remove_file(&last);
                    meshway_testbed::apply::write_private(&last, &absolute(p).display().to_string())?;
                }
                Ok(())
            };
            // A Ctrl-C (or SIGTERM) while it builds removes what was built, as a failure
            // does; killed outright, it left a half-built testbed behind.
            let sig = meshway_agent::signals::Signals::install().context("cannot install signal handlers")?;
            let up = meshway_testbed::up(&file, scale, &opts.prefix, &state, cat, &mut note, &sig.stop)?;
            text::up_text(&up)
        }
        Cmd::Down { opts } => {
            let state = opts.state_path()?;
            // The other state files this user's testbeds with this prefix may have: the one
            // the last `up` noted and the default one.
            let mut others: Vec<PathBuf> = Vec::new();
            let noted = opts.noted()?;
            for o in [noted.clone(), Some(opts.default_state()?)].into_iter().flatten() {
                if o != absolute(&state) && std::fs::symlink_metadata(&o).is_ok() && !others.contains(&o) {
                    others.push(o);
                }
            }
            if let (Some(p), Some(o)) = (&opts.state, others.first()) {
                if std::fs::symlink_metadata(p).is_err() {
                    bail!(
                        "no state file at {}; a testbed with prefix {} is recorded in {}: run `meshway testbed down` without --state, or give that file",
                        p.display(),
                        opts.prefix,
                        o.display()
                    );
                }
            }
            let mut d = meshway_testbed::down(&opts.prefix, &state)?;
            // The note goes with the state file it names, not with a mistyped --state.
            if noted.is_none_or(|n| n == absolute(&state) || std::fs::symlink_metadata(&n).is_err()) {
                let _ = std::fs::remove_file(opts.remembered()?);
            }
            // Namespaces another state file of this user lists are that testbed's, not lost.
            for o in &others {
                if let Ok(st) = meshway_testbed::apply::read_state(o) {
                    d.unclaimed.retain(|n| !st.namespaces.contains(n));
                }
            }
            if !d.unclaimed.is_empty() {
                crate::emit(&text::down_text(&d))?;
                bail!(
                    "{} namespaces with prefix {} remain that no state file of yours lists",
                    d.unclaimed.len(),
                    opts.prefix
                );
            }
            text::down_text(&d)
        }
        Cmd::Run { file, json, timeout, force, opts } => {
            meshway_testbed::check_prefix(&opts.prefix)?;
            let mut shown = Shown::default();
            let (st, flows) = meshway_testbed::run(
                &file,
                &opts.state_path()?,
                &exe()?,
                cat,
                check_timeout(timeout, force)?,
                &mut |p| shown.progress(p),
            )?;
            if json {
                crate::json(&flows)?
            } else {
                text::flows_text(&flows, &st)
            }
        }
        Cmd::Verify { file, json, timeout, force, html, opts } => {
            meshway_testbed::check_prefix(&opts.prefix)?;
            let inputs: Vec<&std::path::Path> = std::iter::once(file.as_path()).chain(catalog.as_deref()).collect();
            // A page that cannot be written is found before the run, not after it.
            if let Some(p) = &html {
                crate::output::check_html(p, &inputs)?;
            }
            let mut shown = Shown::default();
            let rows = meshway_testbed::verify(
                &file,
                &opts.state_path()?,
                &exe()?,
                cat,
                check_timeout(timeout, force)?,
                &mut |p| shown.progress(p),
            )?;
            if let Some(p) = &html {
                crate::output::write_html(p, &text::compared_html(&rows), &inputs)?;
                eprintln!("wrote {}", p.display());
            }
            if json {
                text::compared_json(&rows)?
            } else {
                text::compared_text(&rows)
            }
        }
        Cmd::Flow { recv, send, bytes, parent, until_us } => {
            meshway_testbed::flow_worker(recv, send, bytes, parent, until_us)?
        }
    })
}
