//! `meshway optics` on the example dumps (images the probe tests build byte by byte), on
//! corrupt and foreign files, and on an interface without a module.

mod common;
use common::*;

#[test]
fn the_400zr_dump_decodes_to_the_golden_text_and_valid_json() {
    let o = meshway(&["optics", "examples/optics/qsfp-dd-400zr.hex"]);
    assert!(o.status.success(), "{}", stderr(&o));
    golden("optics-qsfp-dd-400zr.txt", &stdout(&o));
    let o = meshway(&["optics", "examples/optics/qsfp-dd-400zr.hex", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["standard"].as_str(), v["worst"].as_str()), (Some("CMIS"), Some("alarm")));
    assert_eq!(v["vdm"][0]["name"], "pre-FEC BER media input");
    assert!((v["vdm"][0]["value"].as_f64().unwrap() - 1.5e-3).abs() < 1e-12);
    assert_eq!(v["lanes"].as_array().unwrap().len(), 1);
}

/// A pre-FEC BER of 0 (a clean link) at its low thresholds of 0 is no alarm: thresholds are
/// crossed only beyond them.
#[test]
fn a_zero_ber_at_a_zero_low_threshold_is_ok() {
    let text = std::fs::read_to_string(root().join("examples/optics/qsfp-dd-400zr.hex")).unwrap();
    assert!(text.contains("\n0x1280: 98 96"));
    let dir = std::env::temp_dir().join(format!("meshway-optics-ber0-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("zr-ber0.hex");
    std::fs::write(&p, text.replace("\n0x1280: 98 96", "\n0x1280: 00 00")).unwrap();
    let o = meshway(&["optics", p.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["vdm"][0]["name"].as_str(), v["vdm"][0]["value"].as_f64()),
        (Some("pre-FEC BER media input"), Some(0.0))
    );
    assert_eq!((v["vdm"][0]["level"].as_str(), v["worst"].as_str()), (Some("ok"), Some("ok")));
    let o = meshway(&["optics", p.to_str().unwrap()]);
    assert!(stdout(&o).contains("no warnings or alarms") && !stdout(&o).contains("ALARM"), "{}", stdout(&o));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sfp_and_qsfp_dumps_name_their_alarms() {
    let o = meshway(&["optics", "examples/optics/sfp-low-rx.hex"]);
    let s = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        s.contains("0.0150 mW -18.24 dBm") && s.contains("ALARM rx-power low lane 1 (the module's latched flag)"),
        "{s}"
    );
    let o = meshway(&["optics", "examples/optics/qsfp28-lr4.hex"]);
    let s = stdout(&o);
    assert!(s.contains("WARNING rx-power low lane 3") && s.contains("rx power dBm  (warn -10.00 .. 2.40"), "{s}");
    let o = meshway(&["optics", "examples/optics/sfp-25g-sr.hex"]);
    assert!(stdout(&o).contains("no warnings or alarms"));
}

#[test]
fn corrupt_truncated_and_foreign_files_get_clear_messages() {
    let dir = std::env::temp_dir().join(format!("meshway-optics-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One byte of the part number changed: decoded, with the checksum named.
    let text = std::fs::read_to_string(root().join("examples/optics/sfp-25g-sr.hex")).unwrap();
    let bad = text.replace("53 46 50 2d 32 35", "53 46 50 2d 33 35"); // "SFP-25" -> "SFP-35"
    let p = dir.join("bad.hex");
    std::fs::write(&p, &bad).unwrap();
    let o = meshway(&["optics", p.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("CHECKSUM MISMATCH: CC_BASE at byte 63"), "{}", stdout(&o));
    assert!(stderr(&o).contains("CC_BASE checksum mismatch at byte 63"));
    // A0h only, though byte 92 announces diagnostics: the identity, and a note.
    let p = dir.join("short.hex");
    let a0: Vec<&str> = text.lines().filter(|l| !l.starts_with("0x01")).collect();
    std::fs::write(&p, format!("{}\n0x00f0: {}\n", a0.join("\n"), ["00"; 16].join(" "))).unwrap();
    let o = meshway(&["optics", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("part SFP-25G-SR"), "{}", stdout(&o));
    assert_eq!(
        stderr(&o),
        format!("note: {}: the diagnostics page (A2h) is absent: byte 92 announces diagnostics, but the image has 256 bytes (A0h only), so there are no monitors or thresholds\n", p.display())
    );
    // A typo in a dump is named, not read as the end of the image.
    let p = dir.join("typo.hex");
    std::fs::write(&p, text.replace("0x0020: 20 20", "0x0020: 20 2O")).unwrap();
    let o = meshway(&["optics", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(&format!("{}:4: \"2O\" is not a hex byte", p.display())), "{}", stderr(&o));
    // Not a module image at all.
    let p = dir.join("readme.bin");
    std::fs::write(&p, [0x7fu8, b'E', b'L', b'F'].repeat(64)).unwrap();
    let o = meshway(&["optics", p.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("byte 0 (identifier) is 0x7f (other): not an SFP, QSFP or CMIS module"),
        "{}",
        stderr(&o)
    );
    let o = meshway(&["optics", "/nonexistent/eeprom"]);
    assert!(stderr(&o).contains("cannot read /nonexistent/eeprom"), "{}", stderr(&o));
    // lo has no module.
    let o = meshway(&["optics", "lo"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("cannot read the module of lo") && e.contains("give a file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
