//! Module EEPROM images built byte by byte from the specifications (offsets in the comments
//! name the spec fields), decoded and checked number by number.

use meshway_probe::optics::{self, decode, page_offset, Level, Measure, Standard};

/// An image with big-endian writers and checksum fixers.
struct Image(Vec<u8>);

impl Image {
    fn new(len: usize) -> Image {
        Image(vec![0; len])
    }
    fn b(&mut self, at: usize, v: u8) -> &mut Self {
        self.0[at] = v;
        self
    }
    fn u16(&mut self, at: usize, v: u16) -> &mut Self {
        self.0[at..at + 2].copy_from_slice(&v.to_be_bytes());
        self
    }
    fn i16(&mut self, at: usize, v: i16) -> &mut Self {
        self.0[at..at + 2].copy_from_slice(&v.to_be_bytes());
        self
    }
    fn f32(&mut self, at: usize, v: f32) -> &mut Self {
        self.0[at..at + 4].copy_from_slice(&v.to_be_bytes());
        self
    }
    /// ASCII, space padded to `len`.
    fn text(&mut self, at: usize, len: usize, s: &str) -> &mut Self {
        for k in 0..len {
            self.0[at + k] = *s.as_bytes().get(k).unwrap_or(&b' ');
        }
        self
    }
    /// Byte `at` = low 8 bits of the sum of `from..=to`.
    fn sum(&mut self, from: usize, to: usize, at: usize) -> &mut Self {
        self.0[at] = self.0[from..=to].iter().fold(0u8, |a, &b| a.wrapping_add(b));
        self
    }
    /// Four thresholds (high alarm, low alarm, high warn, low warn).
    fn thresholds(&mut self, at: usize, t: [u16; 4]) -> &mut Self {
        for (k, v) in t.iter().enumerate() {
            self.u16(at + 2 * k, *v);
        }
        self
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// SFF-8472: an SR optic with internally calibrated diagnostics (A0h + A2h, 512 bytes).
fn sfp(rx_power_raw: u16) -> Image {
    let mut i = Image::new(512);
    i.b(0, 0x03) // identifier: SFP
        .text(20, 16, "ACME OPTICS") // vendor name
        .b(37, 0x00)
        .b(38, 0x90)
        .b(39, 0x65) // OUI
        .text(40, 16, "SFP-25G-SR") // part number
        .text(56, 4, "A1") // revision
        .text(68, 16, "SN12345") // serial
        .text(84, 8, "240315") // date code YYMMDD
        .b(92, 0x68) // DDM implemented, internally calibrated, average Rx power
        .b(93, 0x80) // alarm/warning flags implemented
        .b(94, 0x08) // SFF-8472 rev 12.0
        .sum(0, 62, 63)
        .sum(64, 94, 95);
    let a2 = 256;
    i.thresholds(a2, [0x5000, 0xfb00u16, 0x4b00, 0x0000]) // temperature: 80, -5, 75, 0 °C
        .thresholds(a2 + 8, [36300, 29700, 34650, 31350]) // Vcc: 3.63 3.0 3.465 3.135 V
        .thresholds(a2 + 16, [6000, 1000, 5000, 1500]) // bias: 12, 2, 10, 3 mA
        .thresholds(a2 + 24, [12589, 1000, 10000, 1259]) // Tx power mW ×1e4
        .thresholds(a2 + 32, [12589, 200, 10000, 400]) // Rx power: low alarm 0.02 mW (-17 dBm)
        .i16(a2 + 96, 0x1a80) // 26.5 °C
        .u16(a2 + 98, 33000) // 3.3 V
        .u16(a2 + 100, 3000) // 6 mA
        .u16(a2 + 102, 5012) // 0.5012 mW
        .u16(a2 + 104, rx_power_raw)
        .sum(a2, a2 + 94, a2 + 95);
    i
}

#[test]
fn sfp_identity_values_and_thresholds() {
    let m = decode(&sfp(3162).0).unwrap();
    assert_eq!(m.standard, Standard::Sff8472);
    assert_eq!(
        (m.vendor.as_str(), m.vendor_oui.as_str(), m.part_number.as_str(), m.vendor_revision.as_str()),
        ("ACME OPTICS", "00:90:65", "SFP-25G-SR", "A1")
    );
    assert_eq!((m.serial.as_str(), m.date_code.as_str()), ("SN12345", "2024-03-15"));
    assert_eq!(m.rx_power_average, Some(true));
    assert!(m.checksums.iter().all(|c| c.ok()) && m.checksums.len() == 3, "{:?}", m.checksums);
    assert_eq!(m.temperature_c, Some(26.5));
    assert!(close(m.supply_v.unwrap(), 3.3));
    let l = &m.lanes[0];
    assert!(close(l.tx_bias_ma.unwrap(), 6.0));
    assert!(close(l.tx_power_mw.unwrap(), 0.5012));
    assert!(close(l.rx_power_mw.unwrap(), 0.3162));
    assert!((optics::dbm(l.rx_power_mw.unwrap()).unwrap() + 5.0).abs() < 0.001);
    let t = m.threshold(Measure::Temperature).unwrap();
    assert_eq!((t.high_alarm, t.low_alarm, t.high_warn, t.low_warn), (80.0, -5.0, 75.0, 0.0));
    assert!(close(m.threshold(Measure::RxPower).unwrap().low_alarm, 0.02));
    assert!(m.findings.is_empty(), "{:?}", m.findings);
    assert_eq!(m.worst(), Level::Ok);
}

#[test]
fn sfp_low_receive_power_raises_the_alarm_by_value_and_by_flag() {
    // 0.015 mW (-18.2 dBm), under the 0.02 mW low alarm; the module latched its flag (A2h
    // byte 113 bit 6: Rx power low alarm) and its warning (byte 117 bit 6).
    let mut i = sfp(150);
    i.b(256 + 113, 0x40).b(256 + 117, 0x40).sum(256, 256 + 94, 256 + 95);
    let m = decode(&i.0).unwrap();
    let rx: Vec<_> = m.findings.iter().filter(|f| f.measure == Measure::RxPower).collect();
    assert_eq!(rx.len(), 3, "{rx:?}");
    assert!(rx.iter().all(|f| f.side == "low" && f.lane == Some(1)));
    assert_eq!(rx.iter().filter(|f| f.latched_flag && f.level == Level::Alarm).count(), 1);
    assert_eq!(rx.iter().filter(|f| f.latched_flag && f.level == Level::Warning).count(), 1);
    assert_eq!(rx.iter().filter(|f| !f.latched_flag && f.level == Level::Alarm).count(), 1);
    assert_eq!(m.worst(), Level::Alarm);
}

#[test]
fn sfp_external_calibration_applies_slopes_offsets_and_the_rx_polynomial() {
    let mut i = sfp(1000);
    let a2 = 256;
    i.b(92, 0x58) // DDM, externally calibrated, average power
        .sum(64, 94, 95)
        // Rx_PWR(4..0) at 56, 60, 64, 68, 72: P = 10 + 2x + 0.001x² (in 0.1 µW).
        .f32(a2 + 56, 0.0)
        .f32(a2 + 60, 0.0)
        .f32(a2 + 64, 0.001)
        .f32(a2 + 68, 2.0)
        .f32(a2 + 72, 10.0)
        .u16(a2 + 76, 0x0200) // Tx_I slope 2.0
        .i16(a2 + 78, 100) // Tx_I offset +100 (2 µA units)
        .u16(a2 + 80, 0x0100) // Tx_PWR slope 1.0
        .i16(a2 + 82, 0)
        .u16(a2 + 84, 0x0100) // T slope 1.0
        .i16(a2 + 86, 256) // T offset +1 °C
        .u16(a2 + 88, 0x0100) // V slope 1.0
        .i16(a2 + 90, -1000) // V offset -0.1 V
        .sum(a2, a2 + 94, a2 + 95);
    let m = decode(&i.0).unwrap();
    assert!(close(m.temperature_c.unwrap(), 27.5));
    assert!(close(m.supply_v.unwrap(), 3.2));
    let l = &m.lanes[0];
    assert!(close(l.tx_bias_ma.unwrap(), (2.0 * 3000.0 + 100.0) * 0.002));
    // x = 1000: 10 + 2000 + 1000 = 3010 × 0.1 µW = 0.301 mW (f32 coefficients).
    assert!((l.rx_power_mw.unwrap() - 0.301).abs() < 1e-6, "{:?}", l.rx_power_mw);
    // Thresholds are calibrated as the readings are: bias high alarm 2 × 6000 + 100 = 12,100
    // (× 2 µA = 24.2 mA), so the 12.2 mA reading is no alarm; temperature +1 °C; Rx by the
    // polynomial (x = 200: 10 + 400 + 40 = 450 × 0.1 µW).
    let t = m.threshold(Measure::TxBias).unwrap();
    assert!(close(t.high_alarm, 24.2) && close(t.low_alarm, (2.0 * 1000.0 + 100.0) * 0.002), "{t:?}");
    assert_eq!(m.threshold(Measure::Temperature).unwrap().high_alarm, 81.0);
    assert!((m.threshold(Measure::RxPower).unwrap().low_alarm - 0.045).abs() < 1e-6);
    assert!(m.findings.is_empty(), "{:?}", m.findings);
    // A non-finite Rx coefficient gives no reading and no Rx thresholds, not "no light".
    i.f32(a2 + 72, f32::NAN).sum(a2, a2 + 94, a2 + 95);
    let m = decode(&i.0).unwrap();
    assert_eq!(m.lanes[0].rx_power_mw, None);
    assert!(m.threshold(Measure::RxPower).is_none());
    assert!(m.findings.iter().all(|f| f.measure != Measure::RxPower), "{:?}", m.findings);
}

/// Thresholds a module leaves at zero are not implemented: no thresholds, no alarms (they
/// used to raise an alarm on every reading).
#[test]
fn zeroed_thresholds_are_absent() {
    let mut i = sfp(3162);
    for k in 0..40 {
        i.b(256 + k, 0);
    }
    i.sum(256, 256 + 94, 256 + 95);
    let m = decode(&i.0).unwrap();
    assert!(m.thresholds.is_empty(), "{:?}", m.thresholds);
    assert!(m.findings.is_empty(), "{:?}", m.findings);
}

#[test]
fn corrupt_checksums_are_reported() {
    let mut i = sfp(3162);
    i.b(40, b'X'); // part number changed after the checksum
    let m = decode(&i.0).unwrap();
    let bad: Vec<_> = m.checksums.iter().filter(|c| !c.ok()).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].name, bad[0].at, bad[0].range), ("CC_BASE", 63, (0, 62)));
    // Part of A2h is cut: an error.
    let e = decode(&i.0[..300]).unwrap_err();
    assert_eq!(e.to_string(), "the image has 300 bytes; an SFP with diagnostics (A0h and A2h) needs at least 512");
}

/// An SFP announcing diagnostics read without its A2h page (256 bytes): the identity is
/// decoded and the missing page is a note, not an error.
#[test]
fn an_sfp_without_its_diagnostics_page_is_decoded_with_a_note() {
    let i = sfp(3162);
    let m = decode(&i.0[..256]).unwrap();
    assert_eq!((m.vendor.as_str(), m.temperature_c, m.lanes.len(), m.worst()), ("ACME OPTICS", None, 0, Level::Ok));
    assert_eq!(
        m.notes,
        ["the diagnostics page (A2h) is absent: byte 92 announces diagnostics, but the image has 256 bytes (A0h only), so there are no monitors or thresholds"]
    );
    assert!(decode(&i.0).unwrap().notes.is_empty());
}

/// SFF-8636: a QSFP28 with page 03h (640 bytes).
fn qsfp28() -> Image {
    let mut i = Image::new(640);
    i.b(0, 0x11) // QSFP28
        .b(1, 0x08) // revision code
        .b(2, 0x00) // paged memory
        .i16(22, 35 * 256) // 35 °C
        .u16(26, 32900) // 3.29 V
        .u16(34, 8000) // Rx power ch1..4: 0.8, 0.8, 0.05, 0.8 mW
        .u16(36, 8000)
        .u16(38, 500)
        .u16(40, 8000)
        .u16(42, 3500) // bias 7 mA each
        .u16(44, 3500)
        .u16(46, 3500)
        .u16(48, 3500)
        .u16(50, 7000) // Tx power 0.7 mW each
        .u16(52, 7000)
        .u16(54, 7000)
        .u16(56, 7000)
        .b(10, 0x10) // Rx power flags ch3/ch4 byte: ch3 low warning (high nibble bit 0)
        .text(148, 16, "ACME")
        .text(168, 16, "QSFP28-100G-LR4")
        .text(184, 2, "B0")
        .text(196, 16, "Q0001")
        .text(212, 8, "23110701")
        .b(220, 0x3c) // temperature, Vcc, average Rx power, Tx power monitored
        .sum(128, 190, 191)
        .sum(192, 222, 223);
    let p3 = |o| page_offset(3, o);
    i.thresholds(p3(128), [75 * 256, 0xfb00, 70 * 256, 0])
        .thresholds(p3(144), [36300, 29700, 34650, 31350])
        .thresholds(p3(176), [34674, 251, 17378, 1000]) // Rx power: low warn 0.1 mW, low alarm 0.0251 mW
        .thresholds(p3(184), [7500, 1000, 6500, 1500])
        .thresholds(p3(192), [34674, 251, 17378, 1000]);
    i
}

#[test]
fn qsfp28_channels_flags_and_page_3_thresholds() {
    let m = decode(&qsfp28().0).unwrap();
    assert_eq!((m.standard, m.identifier_name), (Standard::Sff8636, "QSFP28"));
    assert_eq!((m.part_number.as_str(), m.date_code.as_str()), ("QSFP28-100G-LR4", "2023-11-07 lot 01"));
    assert!(m.checksums.iter().all(|c| c.ok()));
    assert_eq!(m.temperature_c, Some(35.0));
    assert_eq!(m.lanes.len(), 4);
    assert!(close(m.lanes[2].rx_power_mw.unwrap(), 0.05));
    assert!(close(m.lanes[0].tx_bias_ma.unwrap(), 7.0));
    // Channel 3 at 0.05 mW: under the 0.1 mW low warning, over the 0.0251 mW low alarm; the
    // module's own flag says the same (byte 10, high nibble = channel 3, bit 4 = low warning).
    let f: Vec<_> = m.findings.iter().map(|f| (f.measure, f.lane, f.level, f.side, f.latched_flag)).collect();
    assert_eq!(
        f,
        vec![
            (Measure::RxPower, Some(3), Level::Warning, "low", true),
            (Measure::RxPower, Some(3), Level::Warning, "low", false),
        ]
    );
    // Flat memory (byte 2 bit 2): page 03h is not read.
    let mut flat = qsfp28();
    flat.b(2, 0x04);
    assert!(decode(&flat.0).unwrap().thresholds.is_empty());
}

/// CMIS 5.2: a QSFP-DD 400ZR with pages 00h-02h, 11h and one VDM group (20h, 24h, 28h, 2Fh).
fn zr() -> Image {
    let p = page_offset;
    let mut i = Image::new(p(0x2f, 256));
    i.b(0, 0x18) // QSFP-DD
        .b(1, 0x52) // CMIS 5.2
        .b(2, 0x00) // paged
        .b(3, 3 << 1) // module state Ready
        .i16(14, 45 * 256 + 128) // 45.5 °C
        .u16(16, 33100) // 3.31 V
        .b(86, 0x46) // application 1 (host interface code)
        .b(87, 0x3e) // media interface code
        .b(88, 0x81) // 8 host lanes, 1 media lane
        .text(129, 16, "ACME")
        .b(145, 0x00)
        .b(146, 0x1b)
        .b(147, 0x21)
        .text(148, 16, "QDD-400G-ZR")
        .text(164, 2, "01")
        .text(166, 16, "ZR0042")
        .text(182, 8, "250601")
        .sum(128, 221, 222);
    // Page 01h: Rx power is average (151 bit 4); module monitors: temperature and supply
    // (159: bits 0-1); lane monitors: bias, Tx and Rx power, bias multiplier ×2 (160: bits 0-2
    // set, bits 4-3 = 01); VDM supported (142 bit 6).
    i.b(p(1, 151), 0x10).b(p(1, 159), 0x03).b(p(1, 160), 0x0f).b(p(1, 142), 0x40).sum(p(1, 130), p(1, 254), p(1, 255));
    // Page 02h thresholds.
    i.thresholds(p(2, 128), [80 * 256, 0xfb00, 75 * 256, 0])
        .thresholds(p(2, 136), [36300, 29700, 34650, 31350])
        .thresholds(p(2, 176), [31623, 1000, 25119, 1585]) // Tx power mW×1e4
        .thresholds(p(2, 184), [40000, 5000, 35000, 7500]) // bias (×2 multiplier applies)
        .thresholds(p(2, 192), [31623, 100, 25119, 200]) // Rx power
        .sum(p(2, 128), p(2, 254), p(2, 255));
    // Page 11h lane 1: Tx power 0.5 mW (-3 dBm), bias 120 mA (raw 30000 × 2 µA × 2), Rx 0.0501 mW.
    i.u16(p(0x11, 154), 5000).u16(p(0x11, 170), 30000).u16(p(0x11, 186), 501);
    // VDM group 0: descriptors (threshold set in bits 7-4, lane in 3-0; type id).
    let vdm: [(u8, u8, u16); 5] = [
        (0x00, 15, (19 << 11) | 150),   // pre-FEC BER media input: 150e-5 = 1.5e-3 (set 0)
        (0x10, 140, 182),               // eSNR 18.2 dB (set 1)
        (0x20, 139, 305),               // OSNR 30.5 dB (set 2)
        (0x30, 134, (-1234i16) as u16), // CD -1234 ps/nm (set 3)
        (0x40, 4, 50 * 256),            // laser temperature 50 °C (set 4)
    ];
    for (k, (d0, ty, raw)) in vdm.iter().enumerate() {
        i.b(p(0x20, 128 + 2 * k), *d0).b(p(0x20, 129 + 2 * k), *ty).u16(p(0x24, 128 + 2 * k), *raw);
    }
    // Threshold sets: BER high alarm 1.25e-3 (a 400ZR FEC limit is about 1.25e-2; set low here
    // to raise an alarm), eSNR, OSNR limits; sets 3 and 4 left zero (no thresholds).
    let t = |i: &mut Image, set: usize, v: [u16; 4]| {
        i.thresholds(p(0x28, 128 + 8 * set), v);
    };
    t(&mut i, 0, [(19 << 11) | 125, 0, (19 << 11) | 100, 0]);
    t(&mut i, 1, [400, 130, 350, 150]);
    t(&mut i, 2, [500, 200, 450, 240]);
    i.b(p(0x2f, 128), 0x00); // one VDM group
    i
}

/// A paged module's image that ends inside a page is refused; one that ends before a page
/// says so, and the report makes no claim for what it did not read (the 400ZR image, in alarm
/// by its VDM, cut inside page 11h read "no warnings or alarms", exit 0).
#[test]
fn a_cut_image_is_refused_inside_a_page_and_noted_before_one() {
    let zr = zr().0;
    assert_eq!(decode(&zr).unwrap().worst(), Level::Alarm);
    let e = decode(&zr[..2350]).unwrap_err().to_string();
    assert_eq!(e, "the image has 2350 bytes; page 11h (lane monitors and flags) needs at least 2432");
    let m = decode(&zr[..page_offset(0x11, 128)]).unwrap();
    assert_eq!(
        m.notes,
        vec![
            "page 11h (lane monitors and flags) is not in the image (2304 bytes): it was not read",
            "page 2Fh (VDM groups) is not in the image (2304 bytes): it was not read",
        ]
    );
    assert!(m.lanes.is_empty() && m.vdm.is_empty());
    // Lower memory and page 00h alone: pages 01h, 02h and 11h go unread.
    let m = decode(&zr[..256]).unwrap();
    assert_eq!(m.notes.len(), 3, "{:?}", m.notes);
    let q = qsfp28().0;
    assert!(decode(&q[..600]).unwrap_err().to_string().contains("page 03h (thresholds) needs at least 640"));
    let m = decode(&q[..512]).unwrap();
    assert_eq!(m.notes, vec!["page 03h (thresholds) is not in the image (512 bytes): it was not read"]);
    assert!(decode(&q).unwrap().notes.is_empty());
}

#[test]
fn cmis_400zr_lanes_thresholds_and_coherent_vdm() {
    let m = decode(&zr().0).unwrap();
    assert_eq!((m.standard, m.revision.as_str(), m.module_state), (Standard::Cmis, "5.2", Some("Ready")));
    assert_eq!((m.part_number.as_str(), m.vendor_oui.as_str()), ("QDD-400G-ZR", "00:1b:21"));
    assert!(m.checksums.iter().all(|c| c.ok()), "{:?}", m.checksums);
    assert_eq!(m.temperature_c, Some(45.5));
    assert_eq!(m.lanes.len(), 1, "one media lane (application 1)");
    let l = &m.lanes[0];
    assert!(close(l.tx_power_mw.unwrap(), 0.5));
    assert!(close(l.tx_bias_ma.unwrap(), 120.0));
    assert!(close(l.rx_power_mw.unwrap(), 0.0501));
    assert!(close(m.threshold(Measure::TxBias).unwrap().high_alarm, 160.0), "bias thresholds ×2");
    // Rx 0.0501 mW is above the 0.02 mW low warning: no Rx finding.
    assert!(m.findings.is_empty(), "{:?}", m.findings);
    let v: Vec<(&str, f64, Option<Level>)> = m.vdm.iter().map(|v| (v.name.as_str(), v.value, v.level)).collect();
    assert_eq!(v.len(), 5);
    assert_eq!(v[0].0, "pre-FEC BER media input");
    assert!(close(v[0].1, 1.5e-3) && v[0].2 == Some(Level::Alarm));
    assert!(close(v[1].1, 18.2) && v[1].2 == Some(Level::Ok));
    assert!(close(v[2].1, 30.5) && v[2].2 == Some(Level::Ok));
    assert_eq!((v[3].0, v[3].1, v[3].2, m.vdm[3].unit), ("chromatic dispersion", -1234.0, None, "ps/nm"));
    assert_eq!((v[4].1, m.vdm[4].lane), (50.0, 1));
    assert_eq!(m.worst(), Level::Alarm);
    // Without page 2Fh the VDM pages are not read; flat memory stops at the lower page.
    assert!(decode(&zr().0[..page_offset(0x2f, 128)]).unwrap().vdm.is_empty());
    let mut flat = zr();
    flat.b(2, 0x80);
    let f = decode(&flat.0).unwrap();
    assert!(f.lanes.is_empty() && f.vdm.is_empty() && f.temperature_c == Some(45.5));
    // Page 01h byte 159 without the supply monitor (bit 1): the voltage is not read, and a
    // note says why; with neither, the temperature goes too.
    let mut no_vcc = zr();
    no_vcc.b(page_offset(1, 159), 0x01).sum(page_offset(1, 130), page_offset(1, 254), page_offset(1, 255));
    let n = decode(&no_vcc.0).unwrap();
    assert_eq!((n.temperature_c, n.supply_v), (Some(45.5), None));
    assert!(n.notes.iter().any(|x| x.contains("byte 159") && x.contains("no supply voltage")), "{:?}", n.notes);
    no_vcc.b(page_offset(1, 159), 0x00).sum(page_offset(1, 130), page_offset(1, 254), page_offset(1, 255));
    let n = decode(&no_vcc.0).unwrap();
    assert_eq!((n.temperature_c, n.supply_v, n.notes.len()), (None, None, 2));
}

#[test]
fn a_corrupt_cmis_image_reports_its_checksum_and_never_panics() {
    let mut i = zr();
    i.b(150, b'?');
    let m = decode(&i.0).unwrap();
    let bad: Vec<&str> = m.checksums.iter().filter(|c| !c.ok()).map(|c| c.name).collect();
    assert_eq!(bad, vec!["page 00h"]);
    // Random bytes in every page, the identifier kept: decoded or refused, never a panic.
    let mut x: u32 = 12345;
    for _ in 0..200 {
        let mut img = zr().0;
        for b in img.iter_mut().skip(1) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if x.is_multiple_of(7) {
                *b = x as u8;
            }
        }
        let _ = decode(&img);
        let cut = (x as usize) % img.len();
        let _ = decode(&img[..cut]);
    }
}

/// Hex text as `ethtool -m IFACE hex on` prints it (offset, 16 bytes a line), all-zero lines
/// left out but the last (the offsets keep the layout, the last line its length).
fn hex(img: &[u8]) -> String {
    let mut s = String::from("# meshway test image, built byte by byte in crates/meshway-probe/tests/optics.rs\n");
    for (k, chunk) in img.chunks(16).enumerate() {
        if chunk.iter().all(|&b| b == 0) && (k + 1) * 16 < img.len() {
            continue;
        }
        let bytes: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        s.push_str(&format!("0x{:04x}: {}\n", k * 16, bytes.join(" ")));
    }
    s
}

/// The example dumps in examples/optics are these images (UPDATE_GOLDEN=1 rewrites them).
#[test]
fn example_dumps_are_the_test_images() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/optics");
    let mut low = sfp(150);
    low.b(256 + 113, 0x40).b(256 + 117, 0x40).sum(256, 256 + 94, 256 + 95);
    for (name, img) in [
        ("sfp-25g-sr.hex", sfp(3162).0),
        ("sfp-low-rx.hex", low.0),
        ("qsfp28-lr4.hex", qsfp28().0),
        ("qsfp-dd-400zr.hex", zr().0),
    ] {
        let want = hex(&img);
        let p = dir.join(name);
        if std::env::var("UPDATE_GOLDEN").is_ok() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&p, &want).unwrap();
        }
        let got = std::fs::read_to_string(&p).unwrap_or_default();
        assert_eq!(got, want, "{} differs; UPDATE_GOLDEN=1 rewrites it", p.display());
    }
}

/// C-CMIS's six modulator biases (types 128-133) are six observables with six names: one
/// name made six identical lines and six samples of one Prometheus series.
#[test]
fn the_six_modulator_biases_have_their_own_names() {
    let names: Vec<&str> = (128..=133).map(|t| optics::observable(t).unwrap().name).collect();
    assert_eq!(
        names,
        [
            "modulator bias X/I",
            "modulator bias X/Q",
            "modulator bias Y/I",
            "modulator bias Y/Q",
            "modulator bias X phase",
            "modulator bias Y phase"
        ]
    );
}

/// Text fields padded with NUL (common, though the specs ask for spaces) read as their text,
/// not as "????".
#[test]
fn nul_padding_is_padding() {
    let mut q = qsfp28();
    q.text(168, 16, "LR4");
    for k in 171..184 {
        q.b(k, 0);
    }
    let m = decode(&q.0).unwrap();
    assert_eq!(m.part_number, "LR4");
}

/// Status flags are findings: a receiver's loss of signal or a transmitter fault reads as an
/// alarm, a CDR's loss of lock as a warning, on each standard's own bytes (the three images
/// read "no warnings or alarms" with every one of these set).
#[test]
fn loss_of_signal_faults_and_loss_of_lock_are_findings() {
    let status = |m: &optics::Module| -> Vec<(Measure, Option<u8>, Level)> {
        let mut v: Vec<_> =
            m.findings.iter().filter(|f| f.side == "set").map(|f| (f.measure, f.lane, f.level)).collect();
        v.sort_by_key(|x| (x.0.name(), x.1));
        v
    };
    // SFF-8472: A2h byte 110 bit 2 TX_FAULT, bit 1 RX_LOS, counted only where byte 93 says
    // they are monitored (bits 5 and 4).
    let mut i = sfp(3162);
    i.b(256 + 110, 0x06).sum(256, 256 + 94, 256 + 95);
    assert!(status(&decode(&i.0).unwrap()).is_empty(), "not monitored: no finding");
    i.b(93, 0xb0).sum(64, 94, 95);
    let m = decode(&i.0).unwrap();
    assert_eq!(status(&m), [(Measure::RxLos, Some(1), Level::Alarm), (Measure::TxFault, Some(1), Level::Alarm)]);
    assert_eq!(m.worst(), Level::Alarm);
    // SFF-8636: byte 3 Tx LOS lanes 1-4 in bits 4-7 and Rx LOS in bits 0-3, byte 4 Tx fault
    // in bits 0-3, byte 5 Tx CDR LOL in bits 4-7 and Rx in bits 0-3.
    let mut q = qsfp28();
    q.b(3, 0x21).b(4, 0x08).b(5, 0x40);
    let m = decode(&q.0).unwrap();
    assert_eq!(
        status(&m),
        [
            (Measure::RxLos, Some(1), Level::Alarm),
            (Measure::TxCdrLol, Some(3), Level::Warning),
            (Measure::TxFault, Some(4), Level::Alarm),
            (Measure::TxLos, Some(2), Level::Alarm),
        ]
    );
    // CMIS page 11h: 135 Tx fault, 136 Tx LOS, 137 Tx CDR LOL, 147 Rx LOS, 148 Rx CDR LOL,
    // a bit per lane (the 400ZR image has one media lane); and module state Fault.
    let p = page_offset;
    let mut z = zr();
    z.b(p(0x11, 135), 1).b(p(0x11, 147), 1).b(p(0x11, 148), 1).b(p(0x11, 136), 2);
    let m = decode(&z.0).unwrap();
    assert_eq!(
        status(&m),
        [
            (Measure::RxCdrLol, Some(1), Level::Warning),
            (Measure::RxLos, Some(1), Level::Alarm),
            (Measure::TxFault, Some(1), Level::Alarm),
        ],
        "lane 2's bit is beyond the module's one lane"
    );
    let mut z = zr();
    z.b(3, 5 << 1);
    let m = decode(&z.0).unwrap();
    assert_eq!(m.module_state, Some("Fault"));
    assert_eq!(status(&m), [(Measure::ModuleFault, None, Level::Alarm)]);
}

/// Corrupt numbers are not judged as readings: inverted thresholds are dropped with a note
/// (every reading of a healthy module was an alarm), an external calibration that leaves the
/// 16-bit range is no reading (3e38 mW was shown; a negative one read as no light), a bit
/// error ratio above 1 is not judged, and an impossible media lane count is said.
#[test]
fn corrupt_thresholds_calibrations_and_counts_are_said_not_judged() {
    let mut i = sfp(3162);
    i.thresholds(256, [0xfb00, 0x5000, 0x0000, 0x4b00]).sum(256, 256 + 94, 256 + 95);
    let m = decode(&i.0).unwrap();
    assert!(m.threshold(Measure::Temperature).is_none());
    assert!(m.findings.is_empty(), "{:?}", m.findings);
    assert!(m.notes.iter().any(|n| n.contains("temperature thresholds are inverted")), "{:?}", m.notes);
    // External calibration (byte 92 bit 4) with Rx_PWR(4) = 3e38: far above 65,535 counts.
    let mut i = sfp(1000);
    i.b(92, 0x78).sum(64, 94, 95).f32(256 + 56, 3e38).u16(256 + 76, 256).u16(256 + 80, 256).u16(256 + 84, 256);
    i.u16(256 + 88, 256).f32(256 + 68, 1.0).sum(256, 256 + 94, 256 + 95);
    let m = decode(&i.0).unwrap();
    assert_eq!(m.lanes[0].rx_power_mw, None);
    assert!(close(m.lanes[0].tx_bias_ma.unwrap(), 6.0), "{:?}", m.lanes);
    assert!(m.notes.iter().any(|n| n.contains("calibration constants")), "{:?}", m.notes);
    // A negative result: no reading, not "no light".
    i.f32(256 + 56, 0.0).f32(256 + 68, -1.0).sum(256, 256 + 94, 256 + 95);
    assert_eq!(decode(&i.0).unwrap().lanes[0].rx_power_mw, None);
    // A pre-FEC BER of 0xffff (F16: 2.047e10) is shown, not judged.
    let p = page_offset;
    let mut z = zr();
    z.u16(p(0x24, 128), 0xffff);
    let m = decode(&z.0).unwrap();
    let ber = m.vdm.iter().find(|v| v.type_id == 15).unwrap();
    assert!(ber.value > 1.0 && ber.level.is_none(), "{ber:?}");
    assert!(m.notes.iter().any(|n| n.contains("bit error ratio above 1")), "{:?}", m.notes);
    // Byte 88 advertising 0 media lanes.
    let mut z = zr();
    z.b(88, 0x80).sum(128, 221, 222);
    let m = decode(&z.0).unwrap();
    assert_eq!(m.lanes.len(), 8);
    assert!(m.notes.iter().any(|n| n.contains("advertises 0 media lanes")), "{:?}", m.notes);
}
