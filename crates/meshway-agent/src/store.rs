//! Measurement history in SQLite: raw samples, 1-minute and 1-hour rollups, retention.
//!
//! The database runs in WAL mode with `synchronous = NORMAL`: a committed transaction survives
//! the process being killed (it is in the WAL, which the OS holds); only a power loss can take
//! the last transactions. Samples are written in batches, one transaction each.
//!
//! Schema:
//!
//! ```sql
//! targets(id INTEGER PRIMARY KEY, name TEXT UNIQUE, kind TEXT, address TEXT)
//! samples(target_id, ts_ns, rtt_ns NULL = lost, value NULL)       -- value: throughput bit/s
//! rollup_1m / rollup_1h(target_id, start_ns, sent, lost, min_ns, mean_ns, max_ns,
//!                       p50_ns, p90_ns, p99_ns, jitter_ns, value_min, value_mean)
//! ```
//!
//! Rollups are computed from raw samples with the same statistics as everywhere else
//! ([`meshway_probe::stats`]), when a bucket closes and again at startup for the last two hours
//! (so a crash leaves no hole), and on shutdown for the open buckets.

use meshway_probe::objective::Sample;
use meshway_probe::stats::{DelayStats, JITTER_LEAD};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::Path;

pub type Result<T> = rusqlite::Result<T>;

pub const MINUTE_NS: u64 = 60_000_000_000;
pub const HOUR_NS: u64 = 3_600_000_000_000;

pub struct Store {
    conn: Connection,
    ids: HashMap<String, i64>,
}

/// One rollup row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollup {
    pub start_ns: u64,
    pub sent: u64,
    pub lost: u64,
    pub min_ns: Option<u64>,
    pub mean_ns: Option<f64>,
    pub max_ns: Option<u64>,
    pub p50_ns: Option<u64>,
    pub p90_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub jitter_ns: Option<f64>,
    pub value_min: Option<f64>,
    pub value_mean: Option<f64>,
}

impl Rollup {
    /// Aggregates samples (in time order) that fall into one bucket.
    pub fn of(start_ns: u64, samples: &[Sample]) -> Rollup {
        Rollup::after(start_ns, samples, std::iter::empty())
    }

    /// As [`Rollup::of`], its jitter continued from the round trips just before the bucket (in
    /// order), as a receiver running since then reports it at the bucket's end.
    pub fn after(start_ns: u64, samples: &[Sample], prior: impl IntoIterator<Item = u64>) -> Rollup {
        let mut d = DelayStats::new();
        d.after(prior);
        let (mut sent, mut lost) = (0u64, 0u64);
        let (mut vmin, mut vsum, mut vn) = (None::<f64>, 0.0, 0u64);
        for s in samples {
            // A value (a perf run that passed, an interface poll) is a measurement made: sent,
            // not lost. A perf run that failed is stored as a loss.
            sent += 1;
            if let Some(v) = s.value {
                vmin = Some(vmin.map_or(v, |m| m.min(v)));
                vsum += v;
                vn += 1;
                continue;
            }
            match s.rtt_ns {
                Some(r) => d.record(r),
                None => lost += 1,
            }
        }
        let m = d.summary();
        Rollup {
            start_ns,
            sent,
            lost,
            min_ns: m.as_ref().map(|m| m.min_ns),
            mean_ns: m.as_ref().map(|m| m.mean_ns),
            max_ns: m.as_ref().map(|m| m.max_ns),
            p50_ns: m.as_ref().map(|m| m.p50_ns),
            p90_ns: m.as_ref().map(|m| m.p90_ns),
            p99_ns: m.as_ref().map(|m| m.p99_ns),
            jitter_ns: m.as_ref().map(|m| m.jitter_rfc3550_ns),
            value_min: vmin,
            value_mean: (vn > 0).then(|| vsum / vn as f64),
        }
    }
}

/// How far before a window its jitter's lead may reach: 10 minutes (an assumption: agents
/// probe every 1 to 60 s, so it holds the 64-delay lead at up to 9 s a probe). A delay from
/// before a longer gap (the agent stopped, the target was down) belongs to another run: a
/// window's RFC 3550 jitter chained onto a sample three hours older read 1.144 us, 1 us without.
const JITTER_LEAD_SPAN_NS: u64 = 600_000_000_000;

/// The last [`JITTER_LEAD`] round trips of one target within [`JITTER_LEAD_SPAN_NS`] before `before_ns`, in time order: what
/// a bucket's or a span's jitter continues from.
fn rtts_before(conn: &Connection, target_id: i64, before_ns: u64) -> Result<Vec<u64>> {
    let mut st = conn.prepare_cached(
        "SELECT rtt_ns FROM samples WHERE target_id = ?1 AND ts_ns < ?2 AND ts_ns >= ?3 AND rtt_ns IS NOT NULL
         AND value IS NULL ORDER BY ts_ns DESC LIMIT ?4",
    )?;
    let since = before_ns.saturating_sub(JITTER_LEAD_SPAN_NS);
    let it = st.query_map(params![target_id, i(before_ns), i(since), JITTER_LEAD as i64], |r| r.get::<_, i64>(0))?;
    let mut v: Vec<u64> = it.map(|r| r.map(|x| x.max(0) as u64)).collect::<Result<_>>()?;
    v.reverse();
    Ok(v)
}

/// Target name → id, as stored.
fn load_ids(conn: &Connection) -> Result<HashMap<String, i64>> {
    let mut st = conn.prepare("SELECT id, name FROM targets")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(0)?)))?;
    rows.collect()
}

/// A `(ts_ns, rtt_ns, value)` row as a sample; None for one the agent never writes (a
/// negative round trip, a value not finite or beyond 1e18: a perf run of 1e308 b/s read as
/// 18 million Tb/s, a round trip of -5 ms as 0 and pulled the mean down).
fn sample_row(r: &rusqlite::Row<'_>) -> Result<Option<Sample>> {
    let rtt: Option<i64> = r.get(1)?;
    let value: Option<f64> = r.get(2)?;
    if rtt.is_some_and(|x| x < 0) || value.is_some_and(|v| !v.is_finite() || v.abs() > 1e18) {
        return Ok(None);
    }
    Ok(Some(Sample { at_ns: u(r.get(0)?), rtt_ns: rtt.map(u), value }))
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// SQLite's `application_id` of the agent's database ("mesh"), so a file is known as ours.
pub const APPLICATION_ID: i64 = 0x6d65_7368;
/// The agent's tables: a database made before `APPLICATION_ID` was set has only these.
const TABLES: [&str; 5] = ["targets", "samples", "rollup_1m", "rollup_1h", "outbox"];

/// Refuses a database that belongs to another program: one stamped with another application
/// id, or an unstamped one holding tables that are not the agent's. An empty file or a new
/// one is ours to make.
fn check_ours(conn: &Connection, path: &Path) -> Result<()> {
    let refuse = |why: String| {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "{} is not a meshway agent database ({why}); give the agent a file of its own",
                path.display()
            )),
        ))
    };
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if app != 0 && app != APPLICATION_ID {
        return refuse(format!("its application_id is {app:#x}"));
    }
    let mut st =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let foreign: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))?
        .filter(|n| n.as_ref().map_or(true, |n| !TABLES.contains(&n.as_str())))
        .collect::<Result<_>>()?;
    // An older agent's database (unstamped) may hold a backup tool's tables beside the
    // agent's (Litestream's `_litestream_seq`): the agent's own two tables, column for
    // column, say whose it is.
    let columns = |table: &str| -> Result<Vec<String>> {
        let mut st = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"))?;
        let v = st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>>>()?;
        Ok(v)
    };
    let agents = columns("targets")? == ["id", "name", "kind", "address"]
        && columns("samples")? == ["target_id", "ts_ns", "rtt_ns", "value"];
    if app == 0 && !foreign.is_empty() && !agents {
        let more = if foreign.len() > 5 { format!(" and {} more", foreign.len() - 5) } else { String::new() };
        return refuse(format!("it holds other tables: {}{more}", foreign[..foreign.len().min(5)].join(", ")));
    }
    Ok(())
}

/// An agent's hold on its database: an exclusive `flock(2)` on `DB.lock` beside the file the
/// path resolves to, which holds the holder's PID, and one on the database file itself when
/// it exists (a hard link or a second symbolic link is the same file under another name: two
/// agents took `a.db.lock` and `link.db.lock` and wrote one database). SQLite's own locks are
/// `fcntl(2)` locks, which Linux keeps apart from these. The kernel lets them go when the
/// process ends, however it ends; the lock file stays (removing it would let a third agent
/// lock a new file while a second still waits on the old one).
pub struct DbLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
    _db: Option<nix::fcntl::Flock<std::fs::File>>,
}

/// The file `db` names, through any symbolic links; for a file not yet created, its resolved
/// directory and its name.
fn resolved(db: &Path) -> std::path::PathBuf {
    if let Ok(p) = std::fs::canonicalize(db) {
        return p;
    }
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(dir), db.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => db.to_path_buf(),
    }
}

/// Why the database could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("database {db} is in use by another agent ({}; lock {lock}): stop it, or give this agent a database of its own", holder.map_or("its pid unknown".to_string(), |p| format!("pid {p}")))]
    Held { db: String, lock: String, holder: Option<u32> },
    #[error("cannot lock database {db} through {lock}")]
    Io {
        db: String,
        lock: String,
        #[source]
        source: std::io::Error,
    },
}

impl DbLock {
    /// The lock file of the database at `db`: beside the file it resolves to.
    pub fn path(db: &Path) -> std::path::PathBuf {
        let mut p = resolved(db).into_os_string();
        p.push(".lock");
        p.into()
    }

    /// Takes the database at `db` for this process, or says who holds it.
    pub fn take(db: &Path) -> std::result::Result<DbLock, LockError> {
        use nix::fcntl::{Flock, FlockArg};
        use std::io::{Read, Seek, Write};
        let lock = DbLock::path(db);
        let names = || (db.display().to_string(), lock.display().to_string());
        let io = |source: std::io::Error| {
            let (db, lock) = names();
            LockError::Io { db, lock, source }
        };
        let f =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock).map_err(io)?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(mut f) => {
                // The database itself, when it exists: another name of the same file.
                let db_lock = match std::fs::File::open(db) {
                    Ok(d) => match Flock::lock(d, FlockArg::LockExclusiveNonblock) {
                        Ok(d) => Some(d),
                        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                            let (db, _) = names();
                            return Err(LockError::Held { db, lock: "the database file itself".into(), holder: None });
                        }
                        Err((_, e)) => return Err(io(std::io::Error::from(e))),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(io(e)),
                };
                f.set_len(0).map_err(io)?;
                f.rewind().map_err(io)?;
                writeln!(f, "{}", std::process::id()).map_err(io)?;
                Ok(DbLock { _lock: f, _db: db_lock })
            }
            Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let holder = f.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
                let (db, lock) = names();
                Err(LockError::Held { db, lock, holder })
            }
            Err((_, e)) => Err(io(std::io::Error::from(e))),
        }
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Before anything is written (WAL mode included): another program's database is left
        // exactly as it was.
        check_ours(&conn, path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS targets(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, address TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS samples(target_id INTEGER NOT NULL, ts_ns INTEGER NOT NULL, rtt_ns INTEGER, value REAL);
             CREATE INDEX IF NOT EXISTS samples_by_target_time ON samples(target_id, ts_ns);
             CREATE INDEX IF NOT EXISTS samples_by_time ON samples(ts_ns);
             CREATE TABLE IF NOT EXISTS rollup_1m(target_id INTEGER NOT NULL, start_ns INTEGER NOT NULL, sent INTEGER, lost INTEGER,
               min_ns INTEGER, mean_ns REAL, max_ns INTEGER, p50_ns INTEGER, p90_ns INTEGER, p99_ns INTEGER, jitter_ns REAL,
               value_min REAL, value_mean REAL, PRIMARY KEY(target_id, start_ns));
             CREATE TABLE IF NOT EXISTS rollup_1h(target_id INTEGER NOT NULL, start_ns INTEGER NOT NULL, sent INTEGER, lost INTEGER,
               min_ns INTEGER, mean_ns REAL, max_ns INTEGER, p50_ns INTEGER, p90_ns INTEGER, p99_ns INTEGER, jitter_ns REAL,
               value_min REAL, value_mean REAL, PRIMARY KEY(target_id, start_ns));
             CREATE TABLE IF NOT EXISTS outbox(id INTEGER PRIMARY KEY, created_ns INTEGER NOT NULL, body TEXT NOT NULL,
               attempts INTEGER NOT NULL DEFAULT 0, next_ns INTEGER NOT NULL);",
        )?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        let ids = load_ids(&conn)?;
        Ok(Store { conn, ids })
    }

    /// Queues a webhook body for delivery; keeps at most `max` rows (the oldest go first).
    pub fn outbox_add(&mut self, body: &str, now_ns: u64, max: usize) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO outbox(created_ns, body, attempts, next_ns) VALUES (?1, ?2, 0, ?1)",
            params![i(now_ns), body],
        )?;
        let id = self.conn.last_insert_rowid();
        self.conn.execute(
            "DELETE FROM outbox WHERE id NOT IN (SELECT id FROM outbox ORDER BY id DESC LIMIT ?1)",
            params![max as i64],
        )?;
        Ok(id)
    }

    /// Queued bodies due at `now`, oldest first, stopping at the first that is not due: a
    /// body never overtakes an older one still waiting out its backoff (a newer "firing" was
    /// delivered before an older "resolved" of the same alert, which the receiver then kept).
    /// (id, body, attempts so far).
    pub fn outbox_due(&self, now_ns: u64, limit: usize) -> Result<Vec<(i64, String, u32)>> {
        let mut st = self.conn.prepare("SELECT id, body, attempts, next_ns FROM outbox ORDER BY id LIMIT ?1")?;
        let rows =
            st.query_map(params![limit as i64], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), u(r.get::<_, i64>(3)?))))?;
        let mut due = Vec::new();
        for row in rows {
            let (body, next) = row?;
            if next > now_ns {
                break;
            }
            due.push(body);
        }
        Ok(due)
    }

    /// Makes every queued body due at `now_ns` (a new alert is news: what waits before it is
    /// tried again at once, in order, rather than holding it behind a backoff).
    pub fn outbox_due_now(&mut self, now_ns: u64) -> Result<()> {
        self.conn.execute("UPDATE outbox SET next_ns = ?1 WHERE next_ns > ?1", params![i(now_ns)])?;
        Ok(())
    }

    pub fn outbox_done(&mut self, id: i64) -> Result<()> {
        self.conn.execute("DELETE FROM outbox WHERE id = ?1", params![id])?;
        Ok(())
    }

    pub fn outbox_retry(&mut self, id: i64, attempts: u32, next_ns: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox SET attempts = ?2, next_ns = ?3 WHERE id = ?1",
            params![id, attempts, i(next_ns)],
        )?;
        Ok(())
    }

    /// Drops queued bodies created before `before_ns`; returns how many.
    pub fn outbox_expire(&mut self, before_ns: u64) -> Result<usize> {
        self.conn.execute("DELETE FROM outbox WHERE created_ns < ?1", params![i(before_ns)])
    }

    pub fn outbox_len(&self) -> Result<u64> {
        self.conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0)).map(u)
    }

    /// Whether the agent could open `path` as its database, without writing anything (for
    /// `meshway agent --check`): an existing file must be a regular file holding a meshway
    /// agent database (or nothing yet); a new one needs a writable directory that is not a
    /// kernel pseudo-filesystem (/proc, /sys), where no file can be made.
    pub fn check_location(path: &Path) -> std::result::Result<(), String> {
        let shown = path.display();
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Err(format!("{shown} is a directory; give the database a file name inside it")),
            Ok(m) if !m.is_file() => Err(format!("{shown} is not a regular file")),
            Ok(_) => {
                let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .map_err(|e| format!("cannot open {shown}: {e}"))?;
                check_ours(&conn, path)
                    .and_then(|()| conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)))
                    .map_err(|e| e.to_string())?;
                // The agent writes the file, and its journal (-wal, -shm) beside it.
                use nix::unistd::{access, AccessFlags};
                access(path, AccessFlags::W_OK)
                    .map_err(|e| format!("{shown}: cannot write it: {}", std::io::Error::from(e)))?;
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => std::path::PathBuf::from("."),
                };
                access(&dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
                    format!("{shown}: cannot create its journal in {}: {}", dir.display(), std::io::Error::from(e))
                })
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot read {shown}: {e}")),
            Err(_) => {
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => std::path::PathBuf::from("."),
                };
                let dir = std::fs::canonicalize(&parent)
                    .map_err(|e| format!("{shown}: its directory {} cannot be used: {e}", parent.display()))?;
                if !dir.is_dir() {
                    return Err(format!("{shown}: {} is not a directory", parent.display()));
                }
                if ["/proc", "/sys"].iter().any(|k| dir.starts_with(k)) {
                    return Err(format!(
                        "{shown}: {} is a kernel pseudo-filesystem; no database can be made there",
                        dir.display()
                    ));
                }
                if let Err(e) =
                    nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK)
                {
                    return Err(format!("{shown}: cannot create it in {}: {}", dir.display(), std::io::Error::from(e)));
                }
                Ok(())
            }
        }
    }

    /// Opens read-only (for `meshway history`), failing when the file does not exist.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        // Opening a FIFO or a device would block or read nonsense: only a regular file.
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("{} is not a regular file", path.display())),
            ));
        }
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let ids = load_ids(&conn)?;
        Ok(Store { conn, ids })
    }

    /// The id of a target, registering it (or updating its kind and address) as needed.
    pub fn target_id(&mut self, name: &str, kind: &str, address: &str) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO targets(name, kind, address) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, address = excluded.address",
            params![name, kind, address],
        )?;
        let id: i64 = self.conn.query_row("SELECT id FROM targets WHERE name = ?1", params![name], |r| r.get(0))?;
        self.ids.insert(name.to_string(), id);
        Ok(id)
    }

    /// Every target's (name, kind), by name.
    pub fn target_kinds(&self) -> Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare("SELECT name, kind FROM targets ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    pub fn targets(&self) -> Vec<String> {
        let mut v: Vec<String> = self.ids.keys().cloned().collect();
        v.sort();
        v
    }

    /// Writes a batch of samples in one transaction; returns how many were written.
    pub fn insert(&mut self, batch: &[(i64, Sample)]) -> Result<usize> {
        let tx = self.conn.transaction()?;
        {
            let mut st =
                tx.prepare_cached("INSERT INTO samples(target_id, ts_ns, rtt_ns, value) VALUES (?1, ?2, ?3, ?4)")?;
            for (id, s) in batch {
                st.execute(params![id, i(s.at_ns), s.rtt_ns.map(i), s.value])?;
            }
        }
        tx.commit()?;
        Ok(batch.len())
    }

    /// Raw samples of one target in `[from, to)`, in time order.
    /// The round trips a span starting at `before_ns` continues its jitter from.
    pub fn rtts_before(&self, target_id: i64, before_ns: u64) -> Result<Vec<u64>> {
        rtts_before(&self.conn, target_id, before_ns)
    }

    pub fn samples(&self, target_id: i64, from_ns: u64, to_ns: u64) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        self.each_sample(target_id, from_ns, to_ns, |s| out.push(s))?;
        Ok(out)
    }

    /// Hands the raw samples of one target in `[from, to)` to `f` in time order, without
    /// holding them (a long span may have millions); returns how many there were.
    pub fn each_sample(&self, target_id: i64, from_ns: u64, to_ns: u64, f: impl FnMut(Sample)) -> Result<u64> {
        Ok(self.each_sample_checked(target_id, from_ns, to_ns, f)?.0)
    }

    /// [`Store::each_sample`], and how many samples were left out as impossible (see
    /// `sample_row`).
    pub fn each_sample_checked(
        &self,
        target_id: i64,
        from_ns: u64,
        to_ns: u64,
        mut f: impl FnMut(Sample),
    ) -> Result<(u64, u64)> {
        let mut st = self.conn.prepare_cached(
            "SELECT ts_ns, rtt_ns, value FROM samples WHERE target_id = ?1 AND ts_ns >= ?2 AND ts_ns < ?3 ORDER BY ts_ns",
        )?;
        let (mut n, mut skipped) = (0, 0);
        for row in st.query_map(params![target_id, i(from_ns), i(to_ns)], sample_row)? {
            match row? {
                Some(x) => {
                    f(x);
                    n += 1;
                }
                None => skipped += 1,
            }
        }
        Ok((n, skipped))
    }

    pub fn id(&self, name: &str) -> Option<i64> {
        self.ids.get(name).copied()
    }

    /// Recomputes the 1-minute and 1-hour rollup rows of every bucket overlapping `[from, to)`
    /// from raw samples.
    pub fn rollup(&mut self, from_ns: u64, to_ns: u64) -> Result<usize> {
        self.rollup_levels(from_ns, to_ns, true, true)
    }

    /// Recomputes the rollups of the chosen levels (minute, hour) overlapping `[from, to)`.
    pub fn rollup_levels(&mut self, from_ns: u64, to_ns: u64, minutes: bool, hours: bool) -> Result<usize> {
        let ids: Vec<i64> = self.ids.values().copied().collect();
        let mut rows = 0;
        let tx = self.conn.transaction()?;
        let levels = [("rollup_1m", MINUTE_NS, minutes), ("rollup_1h", HOUR_NS, hours)];
        for (table, width, _) in levels.into_iter().filter(|l| l.2) {
            let start = from_ns - from_ns % width;
            for &id in &ids {
                let samples: Vec<Sample> = {
                    let mut st = tx.prepare_cached(
                        "SELECT ts_ns, rtt_ns, value FROM samples WHERE target_id = ?1 AND ts_ns >= ?2 AND ts_ns < ?3 ORDER BY ts_ns",
                    )?;
                    let it = st.query_map(params![id, i(start), i(to_ns)], sample_row)?;
                    it.filter_map(|r| r.transpose()).collect::<Result<_>>()?
                };
                // The round trips just before the first bucket, so its jitter continues from them.
                let mut recent: VecDeque<u64> = rtts_before(&tx, id, start)?.into();
                // When the last of them was taken: a bucket after a longer gap starts afresh.
                let mut last_at: Option<u64> = None;
                let mut k = 0;
                while k < samples.len() {
                    let b = samples[k].at_ns - samples[k].at_ns % width;
                    let end = samples[k..].iter().position(|s| s.at_ns >= b + width).map_or(samples.len(), |p| k + p);
                    if last_at.is_some_and(|l| samples[k].at_ns.saturating_sub(l) > JITTER_LEAD_SPAN_NS) {
                        recent.clear();
                    }
                    let r = Rollup::after(b, &samples[k..end], recent.iter().copied());
                    for x in samples[k..end].iter().filter(|s| s.value.is_none() && s.rtt_ns.is_some()) {
                        if recent.len() == JITTER_LEAD {
                            recent.pop_front();
                        }
                        recent.extend(x.rtt_ns);
                        last_at = Some(x.at_ns);
                    }
                    tx.execute(
                        &format!(
                            "INSERT OR REPLACE INTO {table}(target_id, start_ns, sent, lost, min_ns, mean_ns, max_ns, p50_ns, p90_ns,
                             p99_ns, jitter_ns, value_min, value_mean) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                        ),
                        params![
                            id,
                            i(r.start_ns),
                            i(r.sent),
                            i(r.lost),
                            r.min_ns.map(i),
                            r.mean_ns,
                            r.max_ns.map(i),
                            r.p50_ns.map(i),
                            r.p90_ns.map(i),
                            r.p99_ns.map(i),
                            r.jitter_ns,
                            r.value_min,
                            r.value_mean
                        ],
                    )?;
                    rows += 1;
                    k = end;
                }
            }
        }
        tx.commit()?;
        Ok(rows)
    }

    /// Rollup rows of one target at `width` (minute or hour) with start in `[from, to)`.
    pub fn rollups(&self, target_id: i64, hourly: bool, from_ns: u64, to_ns: u64) -> Result<Vec<Rollup>> {
        Ok(self.rollups_checked(target_id, hourly, from_ns, to_ns)?.0)
    }

    /// [`Store::rollups`], and how many rows were left out as impossible (the agent never
    /// writes one; a file edited or damaged can hold them): a negative count, delay or
    /// jitter, more lost than sent, a minimum above the maximum, percentiles out of order,
    /// a non-finite mean or jitter. They read as 116.667% loss or a p99 below the p50.
    pub fn rollups_checked(
        &self,
        target_id: i64,
        hourly: bool,
        from_ns: u64,
        to_ns: u64,
    ) -> Result<(Vec<Rollup>, u64)> {
        let table = if hourly { "rollup_1h" } else { "rollup_1m" };
        let mut st = self.conn.prepare(&format!(
            "SELECT start_ns, sent, lost, min_ns, mean_ns, max_ns, p50_ns, p90_ns, p99_ns, jitter_ns, value_min, value_mean
             FROM {table} WHERE target_id = ?1 AND start_ns >= ?2 AND start_ns < ?3 ORDER BY start_ns"
        ))?;
        let rows = st.query_map(params![target_id, i(from_ns), i(to_ns)], |r| {
            let ints: [Option<i64>; 8] = [
                Some(r.get(1)?),
                Some(r.get(2)?),
                r.get(3)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                Some(r.get(0)?),
            ];
            let (mean, jitter): (Option<f64>, Option<f64>) = (r.get(4)?, r.get(9)?);
            let (value_min, value_mean): (Option<f64>, Option<f64>) = (r.get(10)?, r.get(11)?);
            let (sent, lost) = (ints[0].unwrap_or(0), ints[1].unwrap_or(0));
            let ordered = |a: Option<i64>, b: Option<i64>| a.zip(b).is_none_or(|(a, b)| a <= b);
            // At most 2^40 probes in a row (an assumption: a million a second for 12 days).
            let ok = ints.iter().flatten().all(|&v| v >= 0)
                && sent <= 1 << 40
                && lost <= sent
                && ordered(ints[2], ints[3])
                && ordered(ints[4], ints[5])
                && ordered(ints[5], ints[6])
                && mean.is_none_or(|m| m.is_finite() && m >= 0.0)
                && jitter.is_none_or(|j| j.is_finite() && j >= 0.0);
            Ok(ok.then(|| Rollup {
                start_ns: u(ints[7].unwrap_or(0)),
                sent: u(sent),
                lost: u(lost),
                min_ns: ints[2].map(u),
                mean_ns: mean,
                max_ns: ints[3].map(u),
                p50_ns: ints[4].map(u),
                p90_ns: ints[5].map(u),
                p99_ns: ints[6].map(u),
                jitter_ns: jitter,
                value_min,
                value_mean,
            }))
        })?;
        let (mut kept, mut skipped) = (Vec::new(), 0u64);
        for row in rows {
            match row? {
                Some(r) => kept.push(r),
                None => skipped += 1,
            }
        }
        Ok((kept, skipped))
    }

    /// Deletes raw samples and rollups older than their retention before `now`.
    pub fn retain(&mut self, now_ns: u64, raw_ns: u64, minute_ns: u64, hour_ns: u64) -> Result<usize> {
        let mut n = 0;
        for (sql, keep) in [
            ("DELETE FROM samples WHERE ts_ns < ?1", raw_ns),
            ("DELETE FROM rollup_1m WHERE start_ns < ?1", minute_ns),
            ("DELETE FROM rollup_1h WHERE start_ns < ?1", hour_ns),
        ] {
            n += self.conn.execute(sql, params![i(now_ns.saturating_sub(keep))])?;
        }
        Ok(n)
    }

    /// Number of raw samples of one target.
    pub fn target_sample_count(&self, target_id: i64) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM samples WHERE target_id = ?1", params![target_id], |r| r.get::<_, i64>(0))
            .map(u)
    }

    /// Number of raw samples (all targets).
    pub fn sample_count(&self) -> Result<u64> {
        self.conn.query_row("SELECT count(*) FROM samples", [], |r| r.get::<_, i64>(0)).map(u)
    }

    /// The newest sample time of any target.
    pub fn latest_ns(&self) -> Result<Option<u64>> {
        self.conn
            .query_row("SELECT max(ts_ns) FROM samples", [], |r| r.get::<_, Option<i64>>(0))
            .optional()
            .map(|v| v.flatten().map(u))
    }

    /// SQLite's own consistency check: `"ok"` when the file is sound.
    pub fn integrity_check(&self) -> Result<String> {
        self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
    }

    /// Checkpoints the WAL into the main file (on graceful shutdown).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("meshway-store-{}-{name}.db", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    /// One agent at a time: a second lock on the file is refused with the holder's PID; once
    /// the first lets go, it is taken.
    #[test]
    fn a_database_is_locked_for_one_agent() {
        let p = tmp("locked");
        let first = DbLock::take(&p).unwrap();
        // flock(2) locks are per open file: a second open in this process is refused as another
        // process's would be.
        let e = DbLock::take(&p).err().unwrap().to_string();
        assert_eq!(
            e,
            format!(
                "database {} is in use by another agent (pid {}; lock {}.lock): stop it, or give this agent a database of its own",
                p.display(),
                std::process::id(),
                p.display()
            )
        );
        drop(first);
        let again = DbLock::take(&p);
        assert!(again.is_ok());
        drop(again);
        let _ = std::fs::remove_file(DbLock::path(&p));
    }

    /// A symbolic link or a hard link names the same database: a second agent through either
    /// is refused (each took its own `NAME.lock` and both wrote one file).
    #[test]
    fn a_database_under_another_name_is_still_locked() {
        let p = tmp("aliased");
        std::fs::write(&p, b"").unwrap();
        let (sym, hard) = (tmp("aliased-sym"), tmp("aliased-hard"));
        std::os::unix::fs::symlink(&p, &sym).unwrap();
        std::fs::hard_link(&p, &hard).unwrap();
        let first = DbLock::take(&p).unwrap();
        assert_eq!(DbLock::path(&sym), DbLock::path(&p), "a link's lock file is the target's");
        let e = DbLock::take(&sym).err().unwrap().to_string();
        assert!(e.contains(&format!("(pid {};", std::process::id())), "{e}");
        let e = DbLock::take(&hard).err().unwrap().to_string();
        assert!(e.starts_with(&format!("database {} is in use by another agent", hard.display())), "{e}");
        assert!(e.contains("lock the database file itself"), "{e}");
        drop(first);
        let again = DbLock::take(&hard);
        assert!(again.is_ok());
        drop(again);
        for f in [&sym, &hard, &p] {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_file(DbLock::path(&p));
        let _ = std::fs::remove_file(DbLock::path(&hard));
    }

    /// The outbox delivers in the order bodies were written: a body waiting out its backoff
    /// holds the later ones, and a new alert makes every waiting body due at once.
    #[test]
    fn the_outbox_never_lets_a_newer_body_overtake() {
        let p = tmp("outbox");
        let mut s = Store::open(&p).unwrap();
        let old = s.outbox_add("resolved", 1_000, 10).unwrap();
        s.outbox_retry(old, 1, 5_000).unwrap(); // the receiver was down: next try at 5 us
        let new = s.outbox_add("firing", 2_000, 10).unwrap();
        assert!(s.outbox_due(3_000, 32).unwrap().is_empty(), "the newer body waits behind the older");
        let due: Vec<String> = s.outbox_due(5_000, 32).unwrap().into_iter().map(|d| d.1).collect();
        assert_eq!(due, ["resolved", "firing"]);
        s.outbox_retry(old, 2, 50_000).unwrap();
        s.outbox_due_now(6_000).unwrap();
        let due: Vec<(i64, String, u32)> = s.outbox_due(6_000, 32).unwrap();
        assert_eq!(due, [(old, "resolved".to_string(), 2), (new, "firing".to_string(), 0)]);
        drop(s);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
        }
    }

    #[test]
    fn another_programs_database_is_refused_and_left_as_it_was() {
        let p = tmp("foreign");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(
            "CREATE TABLE invoices(id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);",
        )
        .unwrap();
        drop(c);
        let before = std::fs::read(&p).unwrap();
        let e = Store::open(&p).err().unwrap().to_string();
        assert!(e.contains("is not a meshway agent database (it holds other tables: invoices)"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), before, "not a byte changed (no WAL switch, no tables)");
        assert!(!std::path::Path::new(&format!("{}-wal", p.display())).exists());
        // Stamped by another application: refused even with no tables.
        let q = tmp("stamped");
        Connection::open(&q).unwrap().pragma_update(None, "application_id", 42).unwrap();
        let e = Store::open(&q).err().unwrap().to_string();
        assert!(e.contains("its application_id is 0x2a"), "{e}");
        // Ours: a new file gets the stamp; one made before the stamp existed (the agent's
        // tables, application_id 0) is taken and stamped.
        let r = tmp("ours");
        drop(Store::open(&r).unwrap());
        let app: i64 = Connection::open(&r).unwrap().query_row("PRAGMA application_id", [], |r| r.get(0)).unwrap();
        assert_eq!(app, APPLICATION_ID);
        Connection::open(&r).unwrap().pragma_update(None, "application_id", 0).unwrap();
        let mut s = Store::open(&r).unwrap();
        assert!(s.target_id("t", "udp", "127.0.0.1:862").is_ok());
        drop(s);
        // An older one a backup tool added its tables to (Litestream's) is still the agent's.
        let c = Connection::open(&r).unwrap();
        c.pragma_update(None, "application_id", 0).unwrap();
        c.execute_batch("CREATE TABLE _litestream_seq(id INTEGER PRIMARY KEY, seq INTEGER);").unwrap();
        drop(c);
        assert!(Store::open(&r).is_ok());
        // A table named `samples` with other columns is not the agent's.
        let q2 = tmp("lookalike");
        let c = Connection::open(&q2).unwrap();
        c.execute_batch("CREATE TABLE samples(x); CREATE TABLE targets(y); CREATE TABLE other(z);").unwrap();
        drop(c);
        let e = Store::open(&q2).err().unwrap().to_string();
        assert!(e.contains("it holds other tables: other"), "{e}");
        let _ = std::fs::remove_file(&q2);
        for f in [p, q, r] {
            let _ = std::fs::remove_file(&f);
            let _ = std::fs::remove_file(format!("{}-wal", f.display()));
            let _ = std::fs::remove_file(format!("{}-shm", f.display()));
        }
    }

    /// One probe every 10 s, delays alternating 10 and 20 ms: every minute's jitter continues
    /// the stream's (about 10 ms once 64 differences have passed), where each minute started
    /// RFC 3550's estimator at 0 and read 2.76 ms.
    #[test]
    fn a_minutes_jitter_continues_from_the_minutes_before() {
        let p = tmp("j");
        let mut s = Store::open(&p).unwrap();
        let id = s.target_id("t", "udp", "127.0.0.1:862").unwrap();
        let batch: Vec<_> = (0..300u64)
            .map(|k| {
                let rtt = if k.is_multiple_of(2) { 10_000_000 } else { 20_000_000 };
                (id, Sample { at_ns: k * 10_000_000_000, rtt_ns: Some(rtt), value: None })
            })
            .collect();
        s.insert(&batch).unwrap();
        // Two passes, as the agent rolls up as it goes: the second continues from the first's samples.
        s.rollup(0, 25 * MINUTE_NS).unwrap();
        s.rollup(25 * MINUTE_NS, 50 * MINUTE_NS).unwrap();
        let m = s.rollups(id, false, 0, HOUR_NS).unwrap();
        assert_eq!(m.len(), 50);
        for r in &m[20..] {
            let j = r.jitter_ns.unwrap();
            assert!((j - 1e7).abs() < 0.02e7, "minute {}: {j}", r.start_ns / MINUTE_NS);
        }
        let _ = std::fs::remove_file(&p);
    }

    /// Rows the agent never writes (more lost than sent, negative, percentiles out of order,
    /// an absurd count) are left out and counted; the good ones around them are kept.
    #[test]
    fn impossible_rollup_rows_are_left_out_and_counted() {
        let p = tmp("r");
        let mut s = Store::open(&p).unwrap();
        let id = s.target_id("t", "udp", "127.0.0.1:862").unwrap();
        let batch: Vec<_> = (0..120u64)
            .map(|k| (id, Sample { at_ns: k * 1_000_000_000, rtt_ns: Some(10_000_000), value: None }))
            .collect();
        s.insert(&batch).unwrap();
        s.rollup(0, 2 * MINUTE_NS).unwrap();
        let bad = [
            "2, 60, 70, 1, 1.0, 2, 1, 1, 1, 0.0",                 // lost > sent
            "3, 60, 0, -5, 1.0, 2, 1, 1, 1, 0.0",                 // negative minimum
            "4, 60, 0, 1, 1.0, 2, 30000000, 1000, 1000, 0.0",     // p50 above p99
            "5, 4611686018427387904, 0, 1, 1.0, 2, 1, 1, 1, 0.0", // 2^62 probes
            "6, 60, 0, 1, 1.0, 2, 1, 1, 1, -1.0",                 // negative jitter
        ];
        for (k, row) in bad.iter().enumerate() {
            let start = (k as u64 + 2) * MINUTE_NS;
            let row = row.split_once(", ").unwrap().1;
            s.conn
                .execute(
                    &format!(
                        "INSERT INTO rollup_1m(target_id, start_ns, sent, lost, min_ns, mean_ns, max_ns, p50_ns, p90_ns, p99_ns, jitter_ns) VALUES ({id}, {start}, {row})"
                    ),
                    [],
                )
                .unwrap();
        }
        let (rows, skipped) = s.rollups_checked(id, false, 0, HOUR_NS).unwrap();
        assert_eq!((rows.len(), skipped), (2, 5));
        assert!(rows.iter().all(|r| r.sent == 60 && r.lost == 0));
        let _ = std::fs::remove_file(&p);
    }

    /// The lead reaches back 10 minutes at most: a sample three hours before a window of
    /// steady 10 ms round trips leaves its jitter 0, where chained onto it the window read
    /// 5 ms x (15/16)^k of jitter that no delay in it had.
    #[test]
    fn the_jitter_lead_stops_at_a_long_gap() {
        let p = tmp("g");
        let mut s = Store::open(&p).unwrap();
        let id = s.target_id("t", "udp", "127.0.0.1:862").unwrap();
        let t0 = 4 * HOUR_NS;
        let mut batch = vec![(id, Sample { at_ns: t0 - 3 * HOUR_NS, rtt_ns: Some(5_000_000), value: None })];
        batch.extend(
            (0..10u64).map(|k| (id, Sample { at_ns: t0 + k * 1_000_000_000, rtt_ns: Some(10_000_000), value: None })),
        );
        s.insert(&batch).unwrap();
        assert!(s.rtts_before(id, t0).unwrap().is_empty());
        assert_eq!(s.rtts_before(id, t0 - 3 * HOUR_NS + 1).unwrap(), [5_000_000]);
        assert_eq!(s.rtts_before(id, t0 + 1).unwrap(), [10_000_000]);
        s.rollup(0, t0 + MINUTE_NS).unwrap();
        let m = s.rollups(id, false, t0, t0 + MINUTE_NS).unwrap();
        assert_eq!(m[0].jitter_ns, Some(0.0));
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn insert_rollup_query_and_retain() {
        let p = tmp("a");
        let mut s = Store::open(&p).unwrap();
        let id = s.target_id("t1", "udp", "127.0.0.1:862").unwrap();
        assert_eq!(s.target_id("t1", "udp", "127.0.0.1:863").unwrap(), id);
        // Two minutes: the first with RTTs 1..=60 ms, the second with 30 samples of which 3 lost.
        let mut batch = Vec::new();
        for k in 0..60u64 {
            batch.push((id, Sample { at_ns: k * 1_000_000_000, rtt_ns: Some((k + 1) * 1_000_000), value: None }));
        }
        for k in 0..30u64 {
            let rtt = (k % 10 != 0).then_some(5_000_000);
            batch.push((id, Sample { at_ns: MINUTE_NS + k * 2_000_000_000, rtt_ns: rtt, value: None }));
        }
        assert_eq!(s.insert(&batch).unwrap(), 90);
        assert_eq!(s.rollup(0, 2 * MINUTE_NS).unwrap(), 3, "two minute rows and one hour row");
        let m = s.rollups(id, false, 0, HOUR_NS).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].sent, m[0].lost, m[0].min_ns, m[0].max_ns), (60, 0, Some(1_000_000), Some(60_000_000)));
        assert_eq!((m[1].sent, m[1].lost, m[1].p50_ns), (30, 3, Some(5_000_000)));
        let h = s.rollups(id, true, 0, HOUR_NS).unwrap();
        assert_eq!((h[0].sent, h[0].lost), (90, 3));
        assert_eq!(s.samples(id, MINUTE_NS, 2 * MINUTE_NS).unwrap().len(), 30);
        // Keep 1 minute of raw: the first minute's samples go; rollups stay.
        let gone = s.retain(2 * MINUTE_NS, MINUTE_NS, HOUR_NS, HOUR_NS).unwrap();
        assert_eq!(gone, 60);
        assert_eq!(s.sample_count().unwrap(), 30);
        assert_eq!(s.rollups(id, false, 0, HOUR_NS).unwrap().len(), 2);
        drop(s);
        let r = Store::open_read_only(&p).unwrap();
        assert_eq!(r.targets(), vec!["t1".to_string()]);
        let _ = std::fs::remove_file(&p);
    }
}
