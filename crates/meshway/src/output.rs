//! Files meshway writes besides standard output (`--html`, `--write-flows`, `--write-trace`,
//! `--htsim`, `--export`): never over an input, never over standard output, never half
//! written.
//!
//! - A path that is an input of the run (the same file, by device and inode, whatever name
//!   or link reaches it) or standard output (`/dev/stdout`, or the file stdout is redirected
//!   to) is refused, and so is `-`: the report already goes to standard output. Two outputs
//!   of one run may not name the same file ([`check_distinct`]).
//! - An HTML page replaces only an HTML page (or an empty file): `--html plan.toml` or
//!   `--html flows.csv` must not turn a scenario or a flow list into a web page.
//! - A regular file is written beside its target and renamed over it, with the target's
//!   permissions: a full disk or a size limit leaves the old file as it was, never a
//!   truncated one. A link is followed and the file it names replaced, unless another user
//!   (not root) owns the link. Anything else that exists (`/dev/null`, a FIFO) is written in
//!   place.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// This process's effective user: the owner of its /proc entry.
fn euid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Refuses a target that is `-`, standard output or one of `inputs`.
fn check_target(path: &Path, inputs: &[&Path]) -> Result<()> {
    if path.as_os_str() == "-" {
        bail!("cannot write -: give a file name (the report itself goes to standard output)");
    }
    let Some(id) = identity(path) else { return Ok(()) };
    // A terminal or /dev/null as both is harmless; a file or pipe would get two documents.
    let device = std::fs::metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_char_device()
    });
    if !device && identity(Path::new("/proc/self/fd/1")) == Some(id) {
        bail!("cannot write {}: it is standard output, where the report goes; give a file name", path.display());
    }
    if let Some(input) = inputs.iter().find(|i| identity(i) == Some(id)) {
        let same = if input == &path { String::new() } else { format!("the same file as {}, ", input.display()) };
        bail!("cannot write {}: it is {same}an input of this run; give the output another name", path.display());
    }
    Ok(())
}

/// Refuses two outputs of one run that name the same file (by device and inode when it
/// exists, else by directory and name after links): the second would replace the first.
pub fn check_distinct(a: (&str, &Path), b: (&str, &Path)) -> Result<()> {
    let key = |p: &Path| -> Option<(PathBuf, std::ffi::OsString)> {
        let t = resolve(p).ok()?;
        let dir = match t.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Some((std::fs::canonicalize(dir).ok()?, t.file_name()?.to_owned()))
    };
    // /dev/null (or a terminal) as both keeps nothing to lose.
    let device = std::fs::metadata(a.1).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_char_device()
    });
    let same = match (identity(a.1), identity(b.1)) {
        (Some(x), Some(y)) => x == y && !device,
        (None, None) => key(a.1).is_some() && key(a.1) == key(b.1),
        _ => false,
    };
    if same {
        bail!(
            "{} {} and {} {} are the same file: the second would replace the first; give them different names",
            a.0,
            a.1.display(),
            b.0,
            b.1.display()
        );
    }
    Ok(())
}

/// Writes `contents` to `path` (see the module's rules), refusing inputs of the run.
pub fn write(path: &Path, contents: &[u8], inputs: &[&Path]) -> Result<()> {
    let target = check(path, inputs, false)?;
    write_unchecked(path, &target, contents)
}

/// Writes an HTML page: as [`write`], and an existing non-empty file must be an HTML page.
pub fn write_html(path: &Path, page: &str, inputs: &[&Path]) -> Result<()> {
    let target = check(path, inputs, true)?;
    write_unchecked(path, &target, page.as_bytes())
}

/// Whether [`write_html`] would refuse `path`, found before a long run rather than after
/// it: everything it checks but the write itself.
pub fn check_html(path: &Path, inputs: &[&Path]) -> Result<()> {
    check(path, inputs, true).map(|_| ())
}

/// The rules of the module short of writing; the name at the end of `path`'s links.
fn check(path: &Path, inputs: &[&Path], html: bool) -> Result<PathBuf> {
    check_target(path, inputs)?;
    if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
        bail!("cannot write {}: a name ending in / is a directory; give a file name", path.display());
    }
    let target = resolve(path)?;
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => bail!("cannot write {}: it is a directory", path.display()),
        Ok(m) if m.is_file() && m.permissions().readonly() => {
            bail!("cannot write {}: it is read-only", path.display())
        }
        Ok(m) if html && m.is_file() && m.len() > 0 && !is_html(path) => bail!(
            "cannot write {}: it exists and is not an HTML page, and meshway replaces only its own pages; \
             give another name or remove the file",
            path.display()
        ),
        // A file this user may not write: asked of the kernel without opening it (an open
        // breaks a lease and tells inotify watchers the file was written).
        Ok(m) if m.is_file() => {
            if let Err(e) = nix::unistd::access(path, nix::unistd::AccessFlags::W_OK) {
                bail!("cannot write {}: {}", path.display(), std::io::Error::from(e));
            }
        }
        Ok(_) => {}
        Err(_) => {
            let dir = match target.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !std::fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
                bail!("cannot write {}: there is no directory {}", path.display(), dir.display());
            }
            // A directory this user may not create in (or /proc): found now, not after a run.
            let probe = dir.join(format!(".meshway-check-{}-{}.tmp", std::process::id(), nonce()));
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
                Ok(_) => {
                    let _ = std::fs::remove_file(&probe);
                }
                Err(e) => bail!("cannot write {}: cannot create a file in {}: {e}", path.display(), dir.display()),
            }
        }
    }
    Ok(target)
}

/// Whether the file starts (after a byte-order mark and white space) with `<!DOCTYPE html`
/// or `<html`, in any case.
fn is_html(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    let n = f.read(&mut head).unwrap_or(0);
    let s = String::from_utf8_lossy(&head[..n]);
    let s = s.trim_start_matches('\u{feff}').trim_start().to_ascii_lowercase();
    s.starts_with("<!doctype html") || s.starts_with("<html")
}

/// Follows a chain of links to the name it ends at, so every link stays a link. Another
/// user's link (in /tmp, say) could point root at any file on the machine: refused.
fn resolve(path: &Path) -> Result<PathBuf> {
    let mut target = path.to_path_buf();
    for _ in 0..40 {
        let Some(m) = std::fs::symlink_metadata(&target).ok().filter(|m| m.file_type().is_symlink()) else {
            break;
        };
        if m.uid() != 0 && Some(m.uid()) != euid() {
            bail!(
                "cannot write {}: {} is a link owned by uid {}, who could point it at any file; remove it or give another name",
                path.display(),
                target.display(),
                m.uid()
            );
        }
        let to = std::fs::read_link(&target).with_context(|| format!("cannot write {}", path.display()))?;
        target = match (to.is_absolute(), target.parent()) {
            (false, Some(dir)) => dir.join(to),
            _ => to,
        };
    }
    if std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!("cannot write {}: its links do not end (a loop, or more than 40)", path.display());
    }
    Ok(target)
}

/// Writes `contents` at `target`, the name `path`'s links end at ([`check`] has passed).
fn write_unchecked(path: &Path, target: &Path, contents: &[u8]) -> Result<()> {
    let cannot = || format!("cannot write {}", path.display());
    let existing = std::fs::metadata(path).ok();
    if existing.as_ref().is_some_and(|m| !m.is_file()) {
        // A device, a FIFO, a pipe (`--html >(wc -c)`): there is nothing to replace.
        return std::fs::write(path, contents).with_context(cannot);
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.meshway-{}-{}.tmp", std::process::id(), nonce()));
    let f = match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
        Ok(f) => f,
        // A directory this user may not create in (or a read-only mount) around a file it
        // may write: written in place, as before.
        Err(e) if matches!(e.raw_os_error(), Some(13 | 1 | 30)) => {
            return std::fs::write(target, contents).with_context(cannot);
        }
        Err(e) => return Err(e).with_context(cannot),
    };
    let result = (|| -> std::io::Result<()> {
        let mut f = f;
        f.write_all(contents)?;
        if let Some(m) = &existing {
            f.set_permissions(m.permissions())?;
            // Root replacing a user's page leaves it theirs.
            if euid() == Some(0) && m.uid() != 0 {
                std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
            }
        }
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(cannot)
}

/// A number that differs between calls and runs, for temporary names.
#[allow(clippy::disallowed_methods)]
fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish() & 0xffff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn inputs_standard_output_and_other_files_are_not_replaced() {
        let d = Dir(std::env::temp_dir().join(format!("meshway-output-test-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&d.0);
        std::fs::create_dir_all(&d.0).unwrap();
        let input = d.0.join("in.toml");
        std::fs::write(&input, "name = \"x\"\n").unwrap();
        let link = d.0.join("link.toml");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let e = write_html(&input, "<!DOCTYPE html>", &[&input]).unwrap_err().to_string();
        assert!(e.contains("an input of this run"), "{e}");
        let e = write(&link, b"x", &[&input]).unwrap_err().to_string();
        assert!(e.contains("the same file as"), "{e}");
        // Not an input, but not a page either.
        let e = write_html(&input, "<!DOCTYPE html>", &[]).unwrap_err().to_string();
        assert!(e.contains("not an HTML page"), "{e}");
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "name = \"x\"\n");
        assert!(write(Path::new("-"), b"x", &[]).unwrap_err().to_string().contains("cannot write -"));
        // Found before writing: a name ending in /, a loop of links, a directory that takes
        // no files (/proc).
        let slash = format!("{}/", d.0.join("p.html").display());
        assert!(check_html(Path::new(&slash), &[]).unwrap_err().to_string().contains("ending in /"));
        let (la, lb) = (d.0.join("la"), d.0.join("lb"));
        std::os::unix::fs::symlink(&lb, &la).unwrap();
        std::os::unix::fs::symlink(&la, &lb).unwrap();
        assert!(check_html(&la, &[]).unwrap_err().to_string().contains("links do not end"));
        assert!(std::fs::symlink_metadata(&la).unwrap().file_type().is_symlink());
        let e = check_html(Path::new("/proc/meshway-x.html"), &[]).unwrap_err().to_string();
        assert!(e.contains("cannot create a file in /proc"), "{e}");
        assert!(check_html(&d.0.join("new.html"), &[]).is_ok());
        assert_eq!(
            std::fs::read_dir(&d.0)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("meshway-check"))
                .count(),
            0,
            "the probe file is removed"
        );
        // A page replaces a page, through a link, keeping the link and the permissions.
        let page = d.0.join("page.html");
        std::fs::write(&page, "\u{feff} <!doctype HTML><p>old").unwrap();
        std::fs::set_permissions(&page, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let plink = d.0.join("plink.html");
        std::os::unix::fs::symlink(&page, &plink).unwrap();
        write_html(&plink, "<!DOCTYPE html><p>new", &[&input]).unwrap();
        assert_eq!(std::fs::read_to_string(&page).unwrap(), "<!DOCTYPE html><p>new");
        assert!(std::fs::symlink_metadata(&plink).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::metadata(&page).unwrap().mode() & 0o777, 0o600);
        // A new file, and nothing left beside it.
        write(&d.0.join("new.csv"), b"a,b\n", &[]).unwrap();
        let left: Vec<String> = std::fs::read_dir(&d.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // Another user's link is not followed (as root: the link can be given away).
        let planted = d.0.join("planted.html");
        std::os::unix::fs::symlink(&page, &planted).unwrap();
        if std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).is_ok() {
            let e = write_html(&planted, "<!DOCTYPE html>", &[]).unwrap_err().to_string();
            assert!(e.contains("is a link owned by uid 65534"), "{e}");
            assert_eq!(std::fs::read_to_string(&page).unwrap(), "<!DOCTYPE html><p>new");
        }
        // A chain of links reaches the page at its end, and every link stays a link.
        let l2 = d.0.join("l2.html");
        let l1 = d.0.join("l1.html");
        std::os::unix::fs::symlink("page.html", &l2).unwrap();
        std::os::unix::fs::symlink("l2.html", &l1).unwrap();
        write_html(&l1, "<!DOCTYPE html><p>chain", &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&page).unwrap(), "<!DOCTYPE html><p>chain");
        assert!(std::fs::symlink_metadata(&l2).unwrap().file_type().is_symlink());
        // A link of one's own to a page not written yet is followed; a read-only page is
        // refused; root replacing a user's page leaves it the user's.
        let dangling = d.0.join("dangling.html");
        std::os::unix::fs::symlink("later.html", &dangling).unwrap();
        write_html(&dangling, "<!DOCTYPE html>", &[]).unwrap();
        assert_eq!(std::fs::read_to_string(d.0.join("later.html")).unwrap(), "<!DOCTYPE html>");
        let ro = d.0.join("ro.html");
        std::fs::write(&ro, "<!DOCTYPE html>").unwrap();
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
        assert!(write_html(&ro, "<!DOCTYPE html>x", &[]).unwrap_err().to_string().contains("read-only"));
        let theirs = d.0.join("theirs.html");
        std::fs::write(&theirs, "<!DOCTYPE html>").unwrap();
        if std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).is_ok() {
            write_html(&theirs, "<!DOCTYPE html>new", &[]).unwrap();
            assert_eq!(std::fs::metadata(&theirs).unwrap().uid(), 65534);
        }
        // A device is written in place.
        write(Path::new("/dev/null"), b"x", &[]).unwrap();
        assert!(write(&d.0, b"x", &[]).unwrap_err().to_string().contains("is a directory"));
    }

    /// `--html X --htsim X`: the matrix replaced the page it had just written.
    #[test]
    fn two_outputs_may_not_name_one_file() {
        let d = Dir(std::env::temp_dir().join(format!("meshway-output-distinct-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&d.0);
        std::fs::create_dir_all(d.0.join("sub")).unwrap();
        let (new, other) = (d.0.join("out"), d.0.join("other"));
        let e = check_distinct(("--html", &new), ("--htsim", &new)).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "--html {0} and --htsim {0} are the same file: the second would replace the first; give them different names",
                new.display()
            )
        );
        // Not there yet, by another spelling; there, through a link.
        let spelled = d.0.join("sub/../out");
        assert!(check_distinct(("--html", &new), ("--htsim", &spelled)).is_err());
        std::fs::write(&new, "x").unwrap();
        let link = d.0.join("link");
        std::os::unix::fs::symlink(&new, &link).unwrap();
        assert!(check_distinct(("--html", &link), ("--htsim", &new)).is_err());
        assert!(check_distinct(("--html", &new), ("--htsim", &other)).is_ok());
        assert!(check_distinct(("--html", &link), ("--htsim", &other)).is_ok());
        let null = Path::new("/dev/null");
        assert!(check_distinct(("--html", null), ("--htsim", null)).is_ok());
    }
}
