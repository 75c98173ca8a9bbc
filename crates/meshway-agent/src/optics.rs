//! Module EEPROM from the kernel (ethtool netlink, half a page per request) or from a file
//! (a binary image as `optoe`'s sysfs `eeprom` or the ethtool ioctl lays it out, or hex text),
//! into the flat image [`meshway_probe::optics::decode`] reads.

use crate::netlink::{ModuleReader, NetlinkError};
use meshway_probe::optics::page_offset;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReadError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Hex { path: String, line: usize, message: String },
    #[error("{path}: no hex bytes found: expected `ethtool -m IFACE hex on`, `xxd` or `xxd -p` output (a line of words without an offset is read as a heading)")]
    NoHex { path: String },
    #[error("{path}: {len} bytes; a module image is 128 to 32896 bytes (the lower page and 256 upper pages of 128)")]
    Size { path: String, len: usize },
}

/// The largest image: the last upper page (FFh).
const MAX_IMAGE: usize = 128 * 256 + 128;

fn put(img: &mut Vec<u8>, at: usize, data: &[u8]) {
    if img.len() < at + data.len() {
        img.resize(at + data.len(), 0);
    }
    img[at..at + data.len()].copy_from_slice(data);
}

/// Reads what the module's type needs, as `ethtool -m` does: SFP A0h and A2h; QSFP page 00h
/// and 03h; CMIS pages 00h-02h, 11h and the VDM pages it advertises.
pub fn read_interface(ifname: &str) -> Result<Vec<u8>, ReadError> {
    let mut r = ModuleReader::open(ifname)?;
    let mut img = r.read(0x50, 0, 0, 0, 128)?;
    let id = img.first().copied().unwrap_or(0);
    let upper = |r: &mut ModuleReader, img: &mut Vec<u8>, page: u8| -> bool {
        match r.read(0x50, page, 0, 128, 128) {
            Ok(d) => {
                put(img, page_offset(page, 128), &d);
                true
            }
            Err(_) => false,
        }
    };
    upper(&mut r, &mut img, 0);
    match id {
        0x03 => {
            // A2h: diagnostics, when the module has them.
            if let (Ok(lo), Ok(hi)) = (r.read(0x51, 0, 0, 0, 128), r.read(0x51, 0, 0, 128, 128)) {
                img.resize(512, 0);
                put(&mut img, 256, &lo);
                put(&mut img, 384, &hi);
            }
        }
        0x0c | 0x0d | 0x11 => {
            if img.get(2).is_some_and(|b| b & 0x04 == 0) {
                upper(&mut r, &mut img, 3);
            }
        }
        _ => {
            if img.get(2).is_some_and(|b| b & 0x80 == 0) {
                for page in [1, 2, 0x11] {
                    upper(&mut r, &mut img, page);
                }
                let vdm = img.get(page_offset(1, 142)).is_some_and(|b| b & 0x40 != 0);
                if vdm && upper(&mut r, &mut img, 0x2f) {
                    let groups = (img.get(page_offset(0x2f, 128)).copied().unwrap_or(0) & 0x03) + 1;
                    for g in 0..groups {
                        for base in [0x20, 0x24, 0x28] {
                            upper(&mut r, &mut img, base + g);
                        }
                    }
                }
            }
        }
    }
    Ok(img)
}

/// Hex text: bytes as two hex digits separated by spaces, lines optionally prefixed with an
/// offset (`0x0080:` or `0080:`, as `ethtool -m hex on` and `xxd` print them, xxd's two-byte
/// groups and ASCII column included); `#` comments; lines without an offset that hold no hex
/// byte (headings) are skipped. Any other token is an error naming it and its line: a typo
/// must not end the image early and leave the rest of it reading as zeros.
pub fn parse_hex(text: &str, path: &str) -> Result<Vec<u8>, ReadError> {
    let mut img = Vec::new();
    // The line (1-based) that gave each byte, 0 for none: a byte given twice with another
    // value is refused (page 03h appended from `ethtool -m ... page 3`, which prints page
    // offsets 0x80-0xff, overwrote page 00h without a word).
    let mut given: Vec<usize> = Vec::new();
    let mut next = 0usize;
    let err = |line: usize, message: String| ReadError::Hex { path: path.into(), line, message };
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let (off, rest) = match line.split_once(':') {
            Some((o, rest)) => {
                let o = o.trim();
                let digits = o.strip_prefix("0x").or_else(|| o.strip_prefix("0X")).unwrap_or(o);
                match usize::from_str_radix(digits, 16) {
                    Ok(v) => (Some(v), rest),
                    Err(_) if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_hexdigit()) => {
                        return Err(err(
                            n + 1,
                            format!("offset 0x{digits} is beyond the last page (0x{MAX_IMAGE:x} bytes)"),
                        ));
                    }
                    Err(_) => continue, // a heading such as "Offset: Values"
                }
            }
            None => (None, line),
        };
        // Tokens with where each starts in `rest`.
        let mut toks: Vec<(usize, &str)> = Vec::new();
        let mut start = None;
        for (i, c) in rest.char_indices().chain([(rest.len(), ' ')]) {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    toks.push((s, &rest[s..i]));
                    start = None;
                }
                _ => {}
            }
        }
        let mut bytes = Vec::new();
        let mut grouped = false; // xxd's two-byte groups
        let mut end = 0; // where the last token ended
        for (i, &(at, tok)) in toks.iter().enumerate() {
            // xxd prints an ASCII column, a character a byte, two spaces after the bytes.
            let gap = &rest[end..at];
            if !bytes.is_empty() && off.is_some() && (gap.len() >= 2 || gap.contains('\t')) {
                let column = rest[at..].trim_end();
                let all_hex = toks[i..].iter().all(|t| hex_token(t.1, true).is_some());
                if column.chars().count() <= bytes.len() && (grouped || !all_hex) {
                    break;
                }
            }
            end = at + tok.len();
            // Without an offset, a run of hex digits is that many bytes: `xxd -p` prints 30 a line.
            let run = if off.is_none() { hex_run(tok) } else { None };
            match run.or_else(|| hex_token(tok, off.is_some())) {
                Some(b) => {
                    grouped |= b.len() == 2;
                    bytes.extend(b);
                }
                // A line of words without an offset: a heading.
                None if off.is_none()
                    && toks.iter().all(|t| hex_token(t.1, false).is_none() && hex_run(t.1).is_none()) =>
                {
                    break
                }
                None => return Err(err(n + 1, format!("\"{tok}\" is not a hex byte"))),
            }
        }
        if bytes.is_empty() {
            continue;
        }
        let at = off.unwrap_or(next);
        if at.saturating_add(bytes.len()) > MAX_IMAGE {
            return Err(err(
                n + 1,
                format!("{} bytes at offset 0x{at:x} run beyond the last page (0x{MAX_IMAGE:x} bytes)", bytes.len()),
            ));
        }
        if given.len() < at + bytes.len() {
            given.resize(at + bytes.len(), 0);
        }
        for (k, &b) in bytes.iter().enumerate() {
            let i = at + k;
            if given[i] != 0 && img.get(i).is_some_and(|&old| old != b) {
                return Err(err(
                    n + 1,
                    format!(
                        "offset 0x{i:x} is given again, as {b:02x}, where line {} gave {:02x}: a page dumped with its own offsets? give image offsets (upper page N at 0x80 + N x 0x80)",
                        given[i], img[i]
                    ),
                ));
            }
            given[i] = n + 1;
        }
        put(&mut img, at, &bytes);
        next = at + bytes.len();
    }
    if img.is_empty() {
        return Err(ReadError::NoHex { path: path.into() });
    }
    Ok(img)
}

/// An even run of hex digits (`xxd -p`'s lines), as its bytes; a lone pair is a byte.
fn hex_run(tok: &str) -> Option<Vec<u8>> {
    if tok.len() < 2 || !tok.len().is_multiple_of(2) || !tok.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..tok.len()).step_by(2).map(|i| u8::from_str_radix(&tok[i..i + 2], 16).ok()).collect()
}

/// A byte as two hex digits (`0x` allowed), or with `pairs` (a line with an offset, as xxd
/// prints them) two bytes as four.
fn hex_token(tok: &str, pairs: bool) -> Option<Vec<u8>> {
    let t = tok.strip_prefix("0x").unwrap_or(tok);
    if !t.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    match t.len() {
        2 => Some(vec![u8::from_str_radix(t, 16).ok()?]),
        4 if pairs => Some(vec![u8::from_str_radix(&t[..2], 16).ok()?, u8::from_str_radix(&t[2..], 16).ok()?]),
        _ => None,
    }
}

/// A file: binary when it is not hex text.
pub fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    let p = path.display().to_string();
    // A hex dump of the largest image, with offsets and spacing, is well under 1 MiB.
    let data = crate::read_regular(path, crate::MAX_SMALL_FILE, false)
        .map_err(|source| ReadError::File { path: p.clone(), source })?;
    // Hex text: lines whose bytes outside `#` comments are printable ASCII (a UTF-8
    // byte-order mark allowed); a comment may hold any bytes. A comment with a degree sign, or
    // in Latin-1, made a dump read as a binary image, and the error blamed the module
    // ("identifier 0x23"). A module image is never that: its identifier byte and its zeros
    // are control characters. (Text that was also required to be mostly hex digits read
    // `0x0000: zz` as an 11-byte image.) The comments are left out before parsing, lines kept.
    let body = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&data);
    let code: Vec<&[u8]> = body.split(|&b| b == b'\n').map(|l| l.split(|&b| b == b'#').next().unwrap_or(&[])).collect();
    let len: usize = code.iter().map(|c| c.len()).sum();
    let hexlike = len > 0 && code.iter().all(|c| c.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()));
    let text = hexlike.then(|| code.iter().map(|c| String::from_utf8_lossy(c)).collect::<Vec<_>>().join("\n"));
    let img = match text {
        Some(t) => parse_hex(&t, &p)?,
        None => data,
    };
    if img.len() < 128 || img.len() > MAX_IMAGE {
        return Err(ReadError::Size { path: p, len: img.len() });
    }
    Ok(img)
}

/// What one poll of an optics target found: per source (an interface name or a file path),
/// the decoded module or why there is none.
pub type OpticsPoll = Vec<(String, Result<meshway_probe::optics::Module, String>)>;

/// Reads every source of an optics target's `address`: `file:PATH` entries, and the
/// interfaces whose names match the other entries (globs). Interfaces without a module
/// (virtual ones, empty cages) are left out.
pub fn poll(address: &str) -> OpticsPoll {
    let mut out = Vec::new();
    let mut globs = Vec::new();
    for entry in address.split([',', ' ']).filter(|e| !e.is_empty()) {
        match entry.strip_prefix("file:") {
            Some(path) if !path.is_empty() => {
                let r = read_file(Path::new(path))
                    .map_err(|e| e.to_string())
                    .and_then(|img| meshway_probe::optics::decode(&img).map_err(|e| format!("{path}: {e}")));
                out.push((path.to_string(), r));
            }
            Some(_) => {}
            None => globs.push(entry),
        }
    }
    if !globs.is_empty() {
        let pattern = globs.join(",");
        match crate::netlink::links() {
            Ok(links) => {
                for l in links.into_iter().filter(|l| crate::iface::matches(&pattern, &l.name)) {
                    match read_interface(&l.name) {
                        Err(ReadError::Netlink(NetlinkError::NoModule(_))) => {}
                        Err(e) => out.push((l.name, Err(e.to_string()))),
                        Ok(img) => {
                            let r = meshway_probe::optics::decode(&img).map_err(|e| format!("{}: {e}", l.name));
                            out.push((l.name, r));
                        }
                    }
                }
            }
            Err(e) => out.push((pattern, Err(e.to_string()))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        let ethtool = "Offset\t\tValues\n------\t\t------\n0x0000:\t\t18 52 00 06\n0x0080:\t\t18 41\n";
        let i = parse_hex(ethtool, "x").unwrap();
        assert_eq!((i.len(), &i[..4], i[0x80], i[0x81]), (0x82, &[0x18, 0x52, 0, 6][..], 0x18, 0x41));
        let xxd = "00000000: 1852 0006 4142  ..RA\n";
        assert_eq!(parse_hex(xxd, "x").unwrap(), vec![0x18, 0x52, 0, 6, 0x41, 0x42]);
        let plain = "# a dump\n03 04 07\n10 00\n";
        assert_eq!(parse_hex(plain, "x").unwrap(), vec![3, 4, 7, 0x10, 0]);
        assert_eq!(
            parse_hex("hello\n", "f.txt").unwrap_err().to_string(),
            "f.txt: no hex bytes found: expected `ethtool -m IFACE hex on`, `xxd` or `xxd -p` output (a line of words without an offset is read as a heading)"
        );
        assert!(parse_hex("0xffffff: 00\n", "f").unwrap_err().to_string().contains("beyond the last page"));
        // An offset at the top of the address space does not wrap past the check.
        let e = parse_hex("0xffffffffffffffff: 03\n", "f").unwrap_err().to_string();
        assert!(e.contains("1 bytes at offset 0xffffffffffffffff run beyond the last page"), "{e}");
        // One too large for a number is named, not skipped as a heading.
        let e = parse_hex("03 04\n0x1ffffffffffffffff: 03\n", "f").unwrap_err().to_string();
        assert!(e.contains("f:2: offset 0x1ffffffffffffffff is beyond the last page"), "{e}");
    }

    /// `xxd -p` prints runs of hex digits without offsets: read as bytes in order (they read
    /// as headings, and the file as "no hex bytes found"). A short file of text with a typo
    /// is text, its typo named (it read as an 11-byte binary image).
    #[test]
    fn plain_hex_runs_and_short_text_files() {
        let img: Vec<u8> = (0..160u32).map(|i| (i * 7 % 256) as u8).collect();
        let p: String =
            img.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().chunks(30).map(|c| c.concat() + "\n").collect();
        assert_eq!(parse_hex(&p, "x").unwrap(), img);
        let dir = std::env::temp_dir().join(format!("meshway-optics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (plain, typo) = (dir.join("p.hex"), dir.join("zz.hex"));
        std::fs::write(&plain, &p).unwrap();
        std::fs::write(&typo, "0x0000: zz\n").unwrap();
        let read = read_file(&plain);
        let e = read_file(&typo).unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(read.unwrap(), img);
        assert_eq!(e, format!("{}:1: \"zz\" is not a hex byte", typo.display()));
    }

    /// A token that is not a hex byte is an error naming it, wherever it is: it used to end
    /// the line, and the rest of the image read as zeros.
    #[test]
    fn a_token_that_is_not_hex_is_refused() {
        let e = |t: &str| parse_hex(t, "m.hex").unwrap_err().to_string();
        assert_eq!(e("0x0000: 03 04\n0x0002: 00 8O 07 01\n"), r#"m.hex:2: "8O" is not a hex byte"#);
        assert_eq!(e("0x0000: 03 zz 00\n"), r#"m.hex:1: "zz" is not a hex byte"#);
        assert_eq!(e("0x0150: 00 00 0\n"), r#"m.hex:1: "0" is not a hex byte"#);
        assert_eq!(e("03 04\n8O 05\n"), r#"m.hex:2: "8O" is not a hex byte"#);
        // Text after the bytes is an ASCII column only as xxd prints it: two spaces after
        // them, no longer than they are.
        assert_eq!(e("0x0000: 03 04  abcdef\n"), r#"m.hex:1: "abcdef" is not a hex byte"#);
        assert_eq!(e("0x0000: 03 04 .x\n"), r#"m.hex:1: ".x" is not a hex byte"#);
        // xxd: an ASCII column that looks like hex is still the column.
        let xxd = "00000000: 6162 6364  abcd\n00000004: 0102 0304  ....\n";
        assert_eq!(parse_hex(xxd, "x").unwrap(), vec![0x61, 0x62, 0x63, 0x64, 1, 2, 3, 4]);
        // A full xxd line with an ASCII column holding spaces, and a heading.
        let full = "Offset Values\n00000000: 2020 2020 0000 0000 5153 4650 3238 2d31      ....QSFP28-1\n";
        assert_eq!(parse_hex(full, "x").unwrap().len(), 16);
    }

    /// A byte given twice with another value is refused, naming both lines; the same value
    /// twice is fine.
    #[test]
    fn a_byte_given_twice_differently_is_refused() {
        let e = parse_hex("0x0080: 11 22\n0x0081: 33\n", "m.hex").unwrap_err().to_string();
        assert!(e.starts_with("m.hex:2: offset 0x81 is given again, as 33, where line 1 gave 22"), "{e}");
        assert_eq!(parse_hex("0x0000: 11 22\n0x0001: 22 33\n", "m.hex").unwrap(), vec![0x11, 0x22, 0x33]);
    }

    /// A hex dump with a comment in UTF-8 or in Latin-1 (not UTF-8), a byte-order mark or
    /// CRLF line ends is still hex text: it was read as a binary image and the error blamed
    /// the module; a bad line still names its number.
    #[test]
    fn a_dump_with_a_utf8_comment_or_a_bom_is_hex_text() {
        let dir = std::env::temp_dir().join(format!("mw-optics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let body: String = (0..8).map(|r| format!("0x{:04x}: {}\n", r * 16, ["03"; 16].join(" "))).collect();
        let heads = [
            ("c.hex", "# cage 4, 25 °C\n".as_bytes()),
            ("b.hex", b"\xef\xbb\xbf".as_slice()),
            ("l.hex", b"# cage 4, 25 \xb0C \xff\xfe\n".as_slice()),
        ];
        for (name, head) in heads {
            let p = dir.join(name);
            std::fs::write(&p, [head, body.as_bytes()].concat()).unwrap();
            assert_eq!(read_file(&p).map(|i| i.len()).ok(), Some(128), "{name}");
        }
        let p = dir.join("crlf.hex");
        std::fs::write(&p, body.replace('\n', "\r\n")).unwrap();
        assert_eq!(read_file(&p).map(|i| i.len()).ok(), Some(128), "CRLF");
        let p = dir.join("bad.hex");
        std::fs::write(&p, [b"# \xb0\n".as_slice(), body.as_bytes(), b"0x0080: 0g\n"].concat()).unwrap();
        let e = read_file(&p).unwrap_err().to_string();
        assert!(e.contains("bad.hex:10:"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
