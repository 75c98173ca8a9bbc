//! Reading the text files people give meshway (scenarios, catalogs, flow lists, job lists,
//! configurations): files and pipes up to a size, never a device, so `/dev/zero` or a
//! runaway file gets an error instead of all of memory.

use std::io::Read;
use std::path::Path;

/// The largest text input read: 1 GiB (an assumption, far beyond any scenario; a flow list
/// of a million lines is about 40 MB).
pub const MAX_TEXT_BYTES: u64 = 1 << 30;

/// The whole of `path` as UTF-8 text. Refuses devices (`/dev/zero` would be read until
/// memory ran out) and anything over [`MAX_TEXT_BYTES`]; a pipe is read like a file.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    read_text_at_most(path, MAX_TEXT_BYTES)
}

fn read_text_at_most(path: &Path, max: u64) -> std::io::Result<String> {
    let m = std::fs::metadata(path)?;
    if m.is_dir() {
        return Err(std::io::Error::other("it is a directory"));
    }
    // Pipes are taken (`<(...)`, /dev/stdin from a pipe) up to the same size; a device is not
    // a file of text.
    use std::os::unix::fs::FileTypeExt;
    if m.file_type().is_char_device() || m.file_type().is_block_device() {
        return Err(std::io::Error::other("it is a device, not a file"));
    }
    let f = std::fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(m.len().min(max) as usize);
    f.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("it is larger than {max} bytes, the most meshway reads")));
    }
    String::from_utf8(bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_text_files_up_to_the_limit_are_read() {
        let d = std::env::temp_dir().join(format!("meshway-files-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("a.toml");
        std::fs::write(&f, "name = \"é\"\n").unwrap();
        assert_eq!(read_text(&f).unwrap(), "name = \"é\"\n");
        assert_eq!(read_text_at_most(&f, 12).unwrap().len(), 12);
        assert!(read_text_at_most(&f, 11).unwrap_err().to_string().contains("larger than 11 bytes"));
        std::fs::write(&f, b"ab\xffcd").unwrap();
        assert!(read_text(&f).unwrap_err().to_string().contains("not UTF-8 text (byte 2)"));
        assert!(read_text(&d).unwrap_err().to_string().contains("directory"));
        assert!(read_text(Path::new("/dev/zero")).unwrap_err().to_string().contains("a device"));
        assert_eq!(read_text(&d.join("none")).unwrap_err().kind(), std::io::ErrorKind::NotFound);
        let _ = std::fs::remove_dir_all(&d);
    }
}
