//! Optical module diagnostics: decodes a module's EEPROM image as `ethtool -m` does, for SFP
//! (SFF-8472), QSFP/QSFP28 (SFF-8636) and QSFP-DD/OSFP (CMIS 4.0/5.x, with the Versatile
//! Diagnostics Monitoring pages where coherent 400ZR/ZR+ modules report pre-FEC BER, eSNR,
//! OSNR, chromatic dispersion and the like, as C-CMIS defines those observables).
//!
//! # The image
//! One flat byte array, as Linux lays module memory out (the ioctl `ETHTOOL_GMODULEEEPROM`
//! image, the `optoe` driver's sysfs `eeprom` file, and the kernel's netlink fallback):
//! - SFP: A0h (I2C 0x50) at 0-255, then A2h (I2C 0x51) at 256-511 (256 bytes: no diagnostics);
//! - QSFP and CMIS: the lower page at 0-127, then the upper half of page `p` at
//!   `128 + 128 p` (page 00h at 128, 01h at 256, 02h at 384, 03h at 512, 11h at 2304, the VDM
//!   pages 20h-2Fh from 4224). Pages beyond the end are absent, as with a flat-memory module.
//!
//! # Sources (offsets, scalings, flags)
//! - SFF-8472 Rev 12.4: A0h serial ID fields, byte 92 diagnostic monitoring type, CC_BASE and
//!   CC_EXT; A2h thresholds (bytes 0-39), external calibration constants (56-91), CC_DMI (95),
//!   real-time values (96-105), alarm and warning flags (112-113, 116-117).
//! - SFF-8636 Rev 2.10a: lower page flags (bytes 6-14), free-side and channel monitors
//!   (22-57), upper page 00h identity, CC_BASE (191) and CC_EXT (223), page 03h thresholds.
//! - CMIS 5.2 (OIF/QSFP-DD MSA): lower memory module state (byte 3), module flags (9) and
//!   monitors (14-17), application descriptors (86-); page 00h identity and checksum (222);
//!   page 01h monitor support (159 module, 160 lanes) and VDM support (142); page 02h thresholds; page 11h lane
//!   flags (135-152) and monitors (154-201); VDM descriptors (20h-23h), samples (24h-27h),
//!   thresholds (28h-2Bh), group count (2Fh byte 128), the F16 format.
//! - OIF-C-CMIS-01.2: the coherent VDM observable types (128-147) and their units.
//! - SFF-8024 Rev 4.11: identifier values.
//!
//! These were cross-checked against the decoders of Linux `ethtool` (sfpdiag.c, qsfp.c,
//! cmis.c) and SONiC's `sonic_xcvr` memory maps. Multi-byte fields are big-endian.

use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum OpticsError {
    #[error("the image is empty")]
    Empty,
    #[error("the image is blank (every byte 0x{0:02x}): no module, or the read failed")]
    Blank(u8),
    #[error("byte 0 (identifier) is 0x{0:02x} ({1}): not an SFP, QSFP or CMIS module")]
    Unsupported(u8, &'static str),
    #[error("the image has {len} bytes; {what} needs at least {need}")]
    Truncated { len: usize, need: usize, what: &'static str },
}

/// The SFF-8024 name of an identifier byte.
pub fn identifier_name(id: u8) -> &'static str {
    match id {
        0x00 => "unknown",
        0x01 => "GBIC",
        0x02 => "soldered",
        0x03 => "SFP/SFP+/SFP28",
        0x06 => "XFP",
        0x0b => "DWDM-SFP",
        0x0c => "QSFP",
        0x0d => "QSFP+",
        0x0e => "CXP",
        0x11 => "QSFP28",
        0x12 => "CXP2",
        0x18 => "QSFP-DD",
        0x19 => "OSFP",
        0x1a => "SFP-DD",
        0x1b => "DSFP",
        0x1e => "QSFP+ (CMIS)",
        0x1f => "SFP-DD (CMIS)",
        0x20 => "SFP+ (CMIS)",
        0x21 => "OSFP-XD",
        0x80..=0xff => "vendor specific",
        _ => "other",
    }
}

/// Which specification the memory map follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Standard {
    #[serde(rename = "SFF-8472")]
    Sff8472,
    #[serde(rename = "SFF-8636")]
    Sff8636,
    #[serde(rename = "CMIS")]
    Cmis,
}

impl Standard {
    pub fn name(self) -> &'static str {
        match self {
            Standard::Sff8472 => "SFF-8472",
            Standard::Sff8636 => "SFF-8636",
            Standard::Cmis => "CMIS",
        }
    }
}

/// A module's own limits for one measurement, in the measurement's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    pub high_alarm: f64,
    pub low_alarm: f64,
    pub high_warn: f64,
    pub low_warn: f64,
}

impl Thresholds {
    /// Where `v` stands against these limits: beyond one, not at it (SFF-8472 and CMIS set a
    /// flag when a value is above a high threshold or below a low one). So a low threshold of
    /// 0 on a quantity that cannot be negative (a pre-FEC BER, an errored-frame count, which
    /// read 0 on a healthy link) is no low limit.
    pub fn level(&self, v: f64) -> Level {
        if v > self.high_alarm || v < self.low_alarm {
            Level::Alarm
        } else if v > self.high_warn || v < self.low_warn {
            Level::Warning
        } else {
            Level::Ok
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Alarm,
}

/// The measurements a module reports, for thresholds and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    Temperature,
    SupplyVoltage,
    TxBias,
    TxPower,
    RxPower,
    /// Status flags (no value, no threshold): a transmitter fault, loss of signal at the
    /// transmitter's input (host side) or the receiver's (media side), loss of lock of a
    /// clock and data recovery, and a module in its Fault state.
    TxFault,
    TxLos,
    RxLos,
    TxCdrLol,
    RxCdrLol,
    ModuleFault,
}

impl Measure {
    pub fn name(self) -> &'static str {
        match self {
            Measure::Temperature => "temperature",
            Measure::SupplyVoltage => "supply-voltage",
            Measure::TxBias => "tx-bias",
            Measure::TxPower => "tx-power",
            Measure::RxPower => "rx-power",
            Measure::TxFault => "tx-fault",
            Measure::TxLos => "tx-los",
            Measure::RxLos => "rx-los",
            Measure::TxCdrLol => "tx-cdr-lol",
            Measure::RxCdrLol => "rx-cdr-lol",
            Measure::ModuleFault => "module-fault",
        }
    }

    /// The level a set status flag raises: an alarm for a fault or a loss of signal (the lane
    /// carries nothing), a warning for a loss of lock (an assumption: a CDR that lost lock
    /// with light present often relocks; with no light LOS is set too).
    pub fn status_level(self) -> Option<Level> {
        match self {
            Measure::TxFault | Measure::TxLos | Measure::RxLos | Measure::ModuleFault => Some(Level::Alarm),
            Measure::TxCdrLol | Measure::RxCdrLol => Some(Level::Warning),
            _ => None,
        }
    }

    /// The unit of values and thresholds.
    pub fn unit(self) -> &'static str {
        match self {
            Measure::Temperature => "°C",
            Measure::SupplyVoltage => "V",
            Measure::TxBias => "mA",
            Measure::TxPower | Measure::RxPower => "mW",
            _ => "",
        }
    }
}

/// One lane's monitors (absent when the module does not implement them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lane {
    /// 1-based.
    pub lane: u8,
    pub tx_bias_ma: Option<f64>,
    pub tx_power_mw: Option<f64>,
    pub rx_power_mw: Option<f64>,
}

/// A flag or a threshold crossing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub measure: Measure,
    /// `None` for module-wide measures.
    pub lane: Option<u8>,
    pub level: Level,
    /// "high" or "low"; "set" for a status flag.
    pub side: &'static str,
    /// Raised by the module's own flag bits (latched), rather than by comparing the current
    /// value with the thresholds.
    pub latched_flag: bool,
}

/// One VDM observable instance (CMIS VDM, C-CMIS for coherent modules).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VdmValue {
    pub type_id: u8,
    pub name: String,
    /// 1-based lane (media or host, as the type says).
    pub lane: u8,
    pub value: f64,
    pub unit: &'static str,
    pub thresholds: Option<Thresholds>,
    pub level: Option<Level>,
}

/// A checksum the image carries, and what its bytes sum to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checksum {
    pub name: &'static str,
    /// Image offset of the checksum byte.
    pub at: usize,
    /// Image offsets summed (inclusive).
    pub range: (usize, usize),
    pub stored: u8,
    pub computed: u8,
}

impl Checksum {
    pub fn ok(&self) -> bool {
        self.stored == self.computed
    }
}

/// Everything decoded from one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Module {
    pub standard: Standard,
    pub identifier: u8,
    pub identifier_name: &'static str,
    /// CMIS revision ("5.2") or SFF-8636/8472 revision code.
    pub revision: String,
    pub vendor: String,
    pub vendor_oui: String,
    pub part_number: String,
    pub vendor_revision: String,
    pub serial: String,
    /// YYYY-MM-DD from the date code (plus the lot code when present).
    pub date_code: String,
    /// CMIS module state (LowPwr, Ready, Fault, ...).
    pub module_state: Option<&'static str>,
    /// Received power is average power (true) or OMA (false).
    pub rx_power_average: Option<bool>,
    pub temperature_c: Option<f64>,
    pub supply_v: Option<f64>,
    pub lanes: Vec<Lane>,
    pub thresholds: Vec<(Measure, Thresholds)>,
    pub findings: Vec<Finding>,
    pub vdm: Vec<VdmValue>,
    pub checksums: Vec<Checksum>,
    /// What the image lacks that the module announces (an SFP's diagnostics page read
    /// without its A2h page): said, not an error.
    pub notes: Vec<String>,
}

impl Module {
    /// The worst level among the findings.
    pub fn worst(&self) -> Level {
        let v = self.vdm.iter().filter_map(|v| v.level);
        self.findings.iter().map(|f| f.level).chain(v).max().unwrap_or(Level::Ok)
    }

    pub fn threshold(&self, m: Measure) -> Option<&Thresholds> {
        self.thresholds.iter().find(|(x, _)| *x == m).map(|(_, t)| t)
    }
}

/// Milliwatts in dBm; `None` for no light.
pub fn dbm(mw: f64) -> Option<f64> {
    (mw > 0.0).then(|| 10.0 * mw.log10())
}

// ---------------------------------------------------------------------------------------------
// byte access

struct Img<'a>(&'a [u8]);

impl Img<'_> {
    fn has(&self, off: usize, len: usize) -> bool {
        off + len <= self.0.len()
    }
    fn u8(&self, off: usize) -> Option<u8> {
        self.0.get(off).copied()
    }
    fn u16(&self, off: usize) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8(off)?, self.u8(off + 1)?]))
    }
    fn i16(&self, off: usize) -> Option<i16> {
        Some(i16::from_be_bytes([self.u8(off)?, self.u8(off + 1)?]))
    }
    fn f32(&self, off: usize) -> Option<f32> {
        Some(f32::from_be_bytes(self.0.get(off..off + 4)?.try_into().ok()?))
    }
    fn text(&self, off: usize, len: usize) -> String {
        let b = self.0.get(off..off + len).unwrap_or_default();
        // Padding with NUL (common, though the specs ask for spaces) is padding, not text.
        let b = &b[..b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1)];
        b.iter()
            .map(|&c| if (0x20..0x7f).contains(&c) { c as char } else { '?' })
            .collect::<String>()
            .trim()
            .to_string()
    }
    fn checksum(&self, name: &'static str, from: usize, to: usize, at: usize) -> Option<Checksum> {
        let stored = self.u8(at)?;
        let computed = self.0.get(from..=to)?.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        Some(Checksum { name, at, range: (from, to), stored, computed })
    }
}

/// Image offset of byte `off` (128-255) of upper page `page`.
pub fn page_offset(page: u8, off: usize) -> usize {
    128 * page as usize + off
}

fn temp(raw: i16) -> f64 {
    f64::from(raw) / 256.0
}
fn volts(raw: u16) -> f64 {
    f64::from(raw) * 100e-6
}
fn bias_ma(raw: u16) -> f64 {
    f64::from(raw) * 0.002
}
fn power_mw(raw: u16) -> f64 {
    f64::from(raw) * 1e-4
}

fn date(img: &Img<'_>, off: usize) -> String {
    let d = img.text(off, 8);
    if d.len() >= 6 && d[..6].chars().all(|c| c.is_ascii_digit()) {
        let lot = d[6..].trim();
        let base = format!("20{}-{}-{}", &d[0..2], &d[2..4], &d[4..6]);
        if lot.is_empty() {
            base
        } else {
            format!("{base} lot {lot}")
        }
    } else {
        d
    }
}

fn oui(img: &Img<'_>, off: usize) -> String {
    (0..3).filter_map(|k| img.u8(off + k)).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Four thresholds at `off` (high alarm, low alarm, high warn, low warn), 2 bytes each.
fn thresholds(img: &Img<'_>, off: usize, m: Measure) -> Option<Thresholds> {
    thresholds_by(img, off, |raw| match m {
        Measure::Temperature => temp(raw as i16),
        Measure::SupplyVoltage => volts(raw),
        Measure::TxBias => bias_ma(raw),
        Measure::TxPower | Measure::RxPower => power_mw(raw),
        _ => f64::NAN,
    })
}

/// Status flags, one bit per lane from bit 0 (lane 1), each set bit a finding.
fn status_bits(m: &mut Module, b: u8, lanes: u8, measure: Measure) {
    let Some(level) = measure.status_level() else { return };
    for l in 0..lanes.min(8) {
        if b & (1 << l) != 0 {
            m.findings.push(Finding { measure, lane: Some(l + 1), level, side: "set", latched_flag: true });
        }
    }
}

/// Four thresholds at `off`, each 2-byte word converted by `conv`. None when all four are 0:
/// a module that does not implement them leaves them zeroed (else every reading would be an
/// alarm), or when a conversion is not finite.
fn thresholds_by(img: &Img<'_>, off: usize, conv: impl Fn(u16) -> f64) -> Option<Thresholds> {
    let raw: Vec<u16> = (0..4).map(|k| img.u16(off + 2 * k)).collect::<Option<_>>()?;
    if raw.iter().all(|&r| r == 0) {
        return None;
    }
    let v: Vec<f64> = raw.iter().map(|&r| conv(r)).collect();
    if !v.iter().all(|x| x.is_finite()) {
        return None;
    }
    Some(Thresholds { high_alarm: v[0], low_alarm: v[1], high_warn: v[2], low_warn: v[3] })
}

/// Findings from comparing values with thresholds.
fn compare(m: &mut Module) {
    // A set whose low limit is above its high one is corrupt: judged by it, every reading
    // of a healthy module was an alarm.
    let (good, bad): (Vec<_>, Vec<_>) =
        m.thresholds.drain(..).partition(|(_, t)| t.low_alarm <= t.high_alarm && t.low_warn <= t.high_warn);
    for (measure, t) in bad {
        let r = |v: f64| (v * 1e4).round() / 1e4;
        m.notes.push(format!(
            "the module's {} thresholds are inverted (alarm {} .. {}, warning {} .. {} {}: a low limit above its high one): not used",
            measure.name(),
            r(t.low_alarm),
            r(t.high_alarm),
            r(t.low_warn),
            r(t.high_warn),
            measure.unit()
        ));
    }
    m.thresholds = good;
    let mut out = Vec::new();
    let mut check = |measure: Measure, lane: Option<u8>, v: Option<f64>, th: Option<&Thresholds>| {
        let (Some(v), Some(t)) = (v, th) else { return };
        let level = t.level(v);
        if level != Level::Ok {
            let side = if v > t.high_warn { "high" } else { "low" };
            out.push(Finding { measure, lane, level, side, latched_flag: false });
        }
    };
    check(Measure::Temperature, None, m.temperature_c, m.threshold(Measure::Temperature));
    check(Measure::SupplyVoltage, None, m.supply_v, m.threshold(Measure::SupplyVoltage));
    for l in &m.lanes {
        check(Measure::TxBias, Some(l.lane), l.tx_bias_ma, m.threshold(Measure::TxBias));
        check(Measure::TxPower, Some(l.lane), l.tx_power_mw, m.threshold(Measure::TxPower));
        check(Measure::RxPower, Some(l.lane), l.rx_power_mw, m.threshold(Measure::RxPower));
    }
    m.findings.extend(out);
}

/// Decodes an image (see the module docs for its layout).
pub fn decode(image: &[u8]) -> Result<Module, OpticsError> {
    let first = *image.first().ok_or(OpticsError::Empty)?;
    if image.len() >= 128 && image[..128].iter().all(|&b| b == first) && (first == 0xff || first == 0) {
        return Err(OpticsError::Blank(first));
    }
    match first {
        0x03 => sff8472(image),
        0x0c | 0x0d | 0x11 => sff8636(image),
        0x18 | 0x19 | 0x1b | 0x1e | 0x1f | 0x20 | 0x21 => cmis(image),
        other => Err(OpticsError::Unsupported(other, identifier_name(other))),
    }
}

/// Whether the image holds upper page `page` (128 bytes at [`page_offset`]) of a paged
/// module: a page cut short is an error (its values would read as absent or wrong), one the
/// image ends before is noted, so the report does not claim a clean module it did not read
/// (a 400ZR image in alarm, cut in page 11h, read "no warnings or alarms").
fn page(img: &Img, m: &mut Module, page: u8, what: &'static str) -> Result<bool, OpticsError> {
    let (start, end) = (page_offset(page, 128), page_offset(page, 256));
    let len = img.0.len();
    if len >= end {
        return Ok(true);
    }
    if len > start {
        return Err(OpticsError::Truncated { len, need: end, what });
    }
    m.notes.push(format!("{what} is not in the image ({len} bytes): it was not read"));
    Ok(false)
}

fn need(image: &[u8], need: usize, what: &'static str) -> Result<(), OpticsError> {
    if image.len() < need {
        Err(OpticsError::Truncated { len: image.len(), need, what })
    } else {
        Ok(())
    }
}

fn empty(standard: Standard, id: u8) -> Module {
    Module {
        standard,
        identifier: id,
        identifier_name: identifier_name(id),
        revision: String::new(),
        vendor: String::new(),
        vendor_oui: String::new(),
        part_number: String::new(),
        vendor_revision: String::new(),
        serial: String::new(),
        date_code: String::new(),
        module_state: None,
        rx_power_average: None,
        temperature_c: None,
        supply_v: None,
        lanes: Vec::new(),
        thresholds: Vec::new(),
        findings: Vec::new(),
        vdm: Vec::new(),
        checksums: Vec::new(),
        notes: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// SFF-8472

fn sff8472(image: &[u8]) -> Result<Module, OpticsError> {
    need(image, 96, "an SFP's serial ID (A0h bytes 0-95)")?;
    let img = Img(image);
    let mut m = empty(Standard::Sff8472, image[0]);
    m.vendor = img.text(20, 16);
    m.vendor_oui = oui(&img, 37);
    m.part_number = img.text(40, 16);
    m.vendor_revision = img.text(56, 4);
    m.serial = img.text(68, 16);
    m.date_code = date(&img, 84);
    m.revision = format!("compliance 0x{:02x}", image[94]);
    m.checksums.extend(img.checksum("CC_BASE", 0, 62, 63));
    m.checksums.extend(img.checksum("CC_EXT", 64, 94, 95));
    let diag = image[92];
    let ddm = diag & 0x40 != 0;
    if !ddm {
        return Ok(m);
    }
    m.rx_power_average = Some(diag & 0x08 != 0);
    if image.len() <= 256 {
        // A0h alone (a reader that did not fetch A2h): the identity stands.
        m.notes.push(format!(
            "the diagnostics page (A2h) is absent: byte 92 announces diagnostics, but the image has {} bytes (A0h only), so there are no monitors or thresholds",
            image.len()
        ));
        return Ok(m);
    }
    need(image, 512, "an SFP with diagnostics (A0h and A2h)")?;
    let a2 = Img(&image[256..512]);
    m.checksums.extend(a2.checksum("CC_DMI", 0, 94, 95).map(|c| Checksum { at: c.at + 256, range: (256, 350), ..c }));
    let external = diag & 0x10 != 0;
    // External calibration: slope (unsigned 8.8) and offset (signed) per measure, Rx power a
    // 4th-order polynomial with IEEE-754 coefficients.
    let slope = |o: usize| a2.u16(o).map_or(1.0, |s| f64::from(s) / 256.0);
    let offset = |o: usize| a2.i16(o).map_or(0.0, f64::from);
    let cal = |raw: u16, s: usize, o: usize| -> f64 {
        if external {
            (slope(s) * f64::from(raw) + offset(o)).max(0.0)
        } else {
            f64::from(raw)
        }
    };
    // A calibrated reading is a 16-bit unsigned count (SFF-8472 9.3): one below 0 or above
    // 65,535 comes from broken constants, and is no reading (NaN) rather than "no light" or
    // 3e38 mW.
    let in_range = |v: f64| if (0.0..=65_535.0).contains(&v) { v } else { f64::NAN };
    let read = |raw: u16, s: usize, o: usize| -> f64 {
        if external {
            in_range(slope(s) * f64::from(raw) + offset(o))
        } else {
            f64::from(raw)
        }
    };
    // Rx_PWR(4) at 56 ... Rx_PWR(0) at 72, IEEE-754 coefficients of a 4th-order polynomial.
    let poly = |raw: u16| -> f64 {
        let x = f64::from(raw);
        (0..5).map(|n| a2.f32(72 - 4 * n).map_or(0.0, f64::from) * x.powi(n as i32)).sum()
    };
    // Non-finite coefficients give NaN, which the caller reports as no reading (f64::max
    // would have made it 0, "no light").
    let rx_cal = |raw: u16| -> f64 {
        if !external {
            return f64::from(raw);
        }
        let p = poly(raw);
        if p.is_finite() {
            p.max(0.0)
        } else {
            f64::NAN
        }
    };
    let rx_read = |raw: u16| if external { in_range(poly(raw)) } else { f64::from(raw) };
    let finite = |v: f64| v.is_finite().then_some(v);
    let t = a2.i16(96).unwrap_or(0);
    m.temperature_c = Some(if external { (slope(84) * f64::from(t) + offset(86)) / 256.0 } else { temp(t) });
    let v = a2.u16(98).unwrap_or(0);
    m.supply_v = Some(read(v, 88, 90) * 100e-6);
    m.supply_v = m.supply_v.and_then(finite);
    m.lanes.push(Lane {
        lane: 1,
        tx_bias_ma: finite(read(a2.u16(100).unwrap_or(0), 76, 78) * 0.002),
        tx_power_mw: finite(read(a2.u16(102).unwrap_or(0), 80, 82) * 1e-4),
        rx_power_mw: finite(rx_read(a2.u16(104).unwrap_or(0)) * 1e-4),
    });
    if external
        && (m.supply_v.is_none()
            || m.lanes[0].tx_bias_ma.is_none()
            || m.lanes[0].tx_power_mw.is_none()
            || m.lanes[0].rx_power_mw.is_none())
    {
        m.notes.push(
            "external calibration (byte 92 bit 4) gives a reading outside the 16-bit range SFF-8472 defines (below 0 or above 65,535 counts): the calibration constants (A2h bytes 56-91) are corrupt, so that reading is shown as -".into(),
        );
    }
    // Status (byte 110, real time): TX_FAULT (bit 2) and RX_LOS (bit 1), where byte 93 says
    // the module monitors them (bits 5 and 4).
    let status = a2.u8(110).unwrap_or(0);
    if image[93] & 0x20 != 0 {
        status_bits(&mut m, (status >> 2) & 1, 1, Measure::TxFault);
    }
    if image[93] & 0x10 != 0 {
        status_bits(&mut m, (status >> 1) & 1, 1, Measure::RxLos);
    }
    // Thresholds are calibrated as the readings are (SFF-8472 9.3; ethtool's sfpdiag.c:
    // "Calibration should occur for all values (threshold and current)").
    let tcal = |raw: u16| {
        if external {
            (slope(84) * f64::from(raw as i16) + offset(86)) / 256.0
        } else {
            temp(raw as i16)
        }
    };
    type Conv<'a> = &'a dyn Fn(u16) -> f64;
    let convs: [(Measure, usize, Conv); 5] = [
        (Measure::Temperature, 0, &tcal),
        (Measure::SupplyVoltage, 8, &|r| cal(r, 88, 90) * 100e-6),
        (Measure::TxBias, 16, &|r| cal(r, 76, 78) * 0.002),
        (Measure::TxPower, 24, &|r| cal(r, 80, 82) * 1e-4),
        (Measure::RxPower, 32, &|r| rx_cal(r) * 1e-4),
    ];
    for (measure, off, conv) in convs {
        if let Some(t) = thresholds_by(&a2, off, conv) {
            m.thresholds.push((measure, t));
        }
    }
    // Latched flags (byte 93 bit 7: implemented): 112-113 alarms, 116-117 warnings.
    if image[93] & 0x80 != 0 {
        let bits = [
            (112, 7, Measure::Temperature, "high"),
            (112, 6, Measure::Temperature, "low"),
            (112, 5, Measure::SupplyVoltage, "high"),
            (112, 4, Measure::SupplyVoltage, "low"),
            (112, 3, Measure::TxBias, "high"),
            (112, 2, Measure::TxBias, "low"),
            (112, 1, Measure::TxPower, "high"),
            (112, 0, Measure::TxPower, "low"),
            (113, 7, Measure::RxPower, "high"),
            (113, 6, Measure::RxPower, "low"),
        ];
        for (level, delta) in [(Level::Alarm, 0), (Level::Warning, 4)] {
            for (byte, bit, measure, side) in bits {
                if a2.u8(byte + delta).is_some_and(|b| b & (1 << bit) != 0) {
                    let lane = (measure != Measure::Temperature && measure != Measure::SupplyVoltage).then_some(1);
                    m.findings.push(Finding { measure, lane, level, side, latched_flag: true });
                }
            }
        }
    }
    compare(&mut m);
    Ok(m)
}

// ---------------------------------------------------------------------------------------------
// SFF-8636

/// Per-channel flag bytes: (first byte, measure); two channels per byte, the lower-numbered
/// channel in the high nibble, bits: high alarm, low alarm, high warn, low warn.
fn channel_flags(img: &Img<'_>, m: &mut Module, layout: &[(usize, Measure)]) {
    for &(byte, measure) in layout {
        for half in 0..2usize {
            let Some(b) = img.u8(byte + half) else { continue };
            for (ch_in_byte, shift) in [(0u8, 4u8), (1, 0)] {
                let lane = 1 + 2 * half as u8 + ch_in_byte;
                let nib = (b >> shift) & 0x0f;
                for (bit, level, side) in [
                    (3, Level::Alarm, "high"),
                    (2, Level::Alarm, "low"),
                    (1, Level::Warning, "high"),
                    (0, Level::Warning, "low"),
                ] {
                    if nib & (1 << bit) != 0 {
                        m.findings.push(Finding { measure, lane: Some(lane), level, side, latched_flag: true });
                    }
                }
            }
        }
    }
}

/// Module-wide flags in one byte: bits `hi_alarm, lo_alarm, hi_warn, lo_warn` positions.
fn module_flags(b: u8, bits: [u8; 4], measure: Measure, m: &mut Module) {
    for (bit, level, side) in [
        (bits[0], Level::Alarm, "high"),
        (bits[1], Level::Alarm, "low"),
        (bits[2], Level::Warning, "high"),
        (bits[3], Level::Warning, "low"),
    ] {
        if b & (1 << bit) != 0 {
            m.findings.push(Finding { measure, lane: None, level, side, latched_flag: true });
        }
    }
}

fn sff8636(image: &[u8]) -> Result<Module, OpticsError> {
    need(image, 256, "a QSFP's lower page and upper page 00h")?;
    let img = Img(image);
    let mut m = empty(Standard::Sff8636, image[0]);
    m.revision = format!("revision 0x{:02x}", image[1]);
    m.vendor = img.text(148, 16);
    m.vendor_oui = oui(&img, 165);
    m.part_number = img.text(168, 16);
    m.vendor_revision = img.text(184, 2);
    m.serial = img.text(196, 16);
    m.date_code = date(&img, 212);
    m.checksums.extend(img.checksum("CC_BASE", 128, 190, 191));
    m.checksums.extend(img.checksum("CC_EXT", 192, 222, 223));
    let diag = image[220];
    m.rx_power_average = Some(diag & 0x08 != 0);
    if diag & 0x20 != 0 {
        m.temperature_c = img.i16(22).map(temp);
    }
    if diag & 0x10 != 0 {
        m.supply_v = img.u16(26).map(volts);
    }
    let tx_power = diag & 0x04 != 0;
    for ch in 0..4u8 {
        let o = 2 * ch as usize;
        m.lanes.push(Lane {
            lane: ch + 1,
            rx_power_mw: img.u16(34 + o).map(power_mw),
            tx_bias_ma: img.u16(42 + o).map(bias_ma),
            tx_power_mw: if tx_power { img.u16(50 + o).map(power_mw) } else { None },
        });
    }
    // Latched status (SFF-8636 6.2.3): byte 3 Tx LOS lanes 1-4 in bits 4-7, Rx LOS in
    // bits 0-3; byte 4 Tx fault in bits 0-3; byte 5 Tx CDR LOL in bits 4-7, Rx in 0-3.
    status_bits(&mut m, image[3] >> 4, 4, Measure::TxLos);
    status_bits(&mut m, image[3] & 0x0f, 4, Measure::RxLos);
    status_bits(&mut m, image[4] & 0x0f, 4, Measure::TxFault);
    status_bits(&mut m, image[5] >> 4, 4, Measure::TxCdrLol);
    status_bits(&mut m, image[5] & 0x0f, 4, Measure::RxCdrLol);
    module_flags(image[6], [7, 6, 5, 4], Measure::Temperature, &mut m);
    module_flags(image[7], [7, 6, 5, 4], Measure::SupplyVoltage, &mut m);
    channel_flags(&img, &mut m, &[(9, Measure::RxPower), (11, Measure::TxBias), (13, Measure::TxPower)]);
    // Page 03h thresholds, when the module pages (byte 2 bit 2 clear) and the image holds it.
    let flat = image[2] & 0x04 != 0;
    if !flat && page(&img, &mut m, 3, "page 03h (thresholds)")? {
        let p3 = |off: usize| page_offset(3, off);
        for (measure, off) in [
            (Measure::Temperature, 128),
            (Measure::SupplyVoltage, 144),
            (Measure::RxPower, 176),
            (Measure::TxBias, 184),
            (Measure::TxPower, 192),
        ] {
            if let Some(t) = thresholds(&img, p3(off), measure) {
                m.thresholds.push((measure, t));
            }
        }
    }
    compare(&mut m);
    Ok(m)
}

// ---------------------------------------------------------------------------------------------
// CMIS

fn module_state(b3: u8) -> &'static str {
    match (b3 >> 1) & 0x07 {
        1 => "LowPwr",
        2 => "PwrUp",
        3 => "Ready",
        4 => "PwrDn",
        5 => "Fault",
        _ => "reserved",
    }
}

fn cmis(image: &[u8]) -> Result<Module, OpticsError> {
    need(image, 256, "a CMIS module's lower page and page 00h")?;
    let img = Img(image);
    let mut m = empty(Standard::Cmis, image[0]);
    m.revision = format!("{}.{}", image[1] >> 4, image[1] & 0x0f);
    m.module_state = Some(module_state(image[3]));
    if m.module_state == Some("Fault") {
        m.findings.push(Finding {
            measure: Measure::ModuleFault,
            lane: None,
            level: Level::Alarm,
            side: "set",
            latched_flag: true,
        });
    }
    m.vendor = img.text(129, 16);
    m.vendor_oui = oui(&img, 145);
    m.part_number = img.text(148, 16);
    m.vendor_revision = img.text(164, 2);
    m.serial = img.text(166, 16);
    m.date_code = date(&img, 182);
    m.checksums.extend(img.checksum("page 00h", 128, 221, 222));
    m.temperature_c = img.i16(14).map(temp);
    m.supply_v = img.u16(16).map(volts);
    module_flags(image[9], [0, 1, 2, 3], Measure::Temperature, &mut m);
    module_flags(image[9], [4, 5, 6, 7], Measure::SupplyVoltage, &mut m);
    let flat = image[2] & 0x80 != 0;
    let p = page_offset;
    if flat || !page(&img, &mut m, 1, "page 01h (advertising)")? {
        if !flat {
            // Without page 01h the pages it would announce are unknown; say which go unread.
            let _ = page(&img, &mut m, 2, "page 02h (thresholds)");
            let _ = page(&img, &mut m, 0x11, "page 11h (lane monitors and flags)");
        }
        compare(&mut m);
        return Ok(m);
    }
    // Page 01h: which module monitors exist (159: bit 0 temperature, bit 1 supply voltage;
    // CMIS 5.2 section 8.4.7), which lane monitors exist, the bias multiplier, Rx power type,
    // VDM support. A monitor the module does not have reads 0 in its bytes, not a value.
    let module_mon = img.u8(p(1, 159)).unwrap_or(0);
    for (bit, what, value) in [
        (0x01, "temperature (bytes 14-15)", &mut m.temperature_c),
        (0x02, "supply voltage (bytes 16-17)", &mut m.supply_v),
    ] {
        if module_mon & bit == 0 && value.take().is_some() {
            m.notes.push(format!("page 01h byte 159 says the module has no {what} monitor: not read"));
        }
    }
    let lane_mon = img.u8(p(1, 160)).unwrap_or(0);
    let bias_mult = match (lane_mon >> 3) & 0x03 {
        1 => 2.0,
        2 => 4.0,
        _ => 1.0,
    };
    m.rx_power_average = img.u8(p(1, 151)).map(|b| b & 0x10 != 0);
    m.checksums.extend(img.checksum("page 01h", p(1, 130), p(1, 254), p(1, 255)));
    // Media lanes of the first application (byte 88, low nibble), 8 when unset.
    let lanes = match image[88] & 0x0f {
        n @ 1..=8 => n,
        n => {
            m.notes.push(format!(
                "the first application (byte 88) advertises {n} media lanes, expected 1 to 8: all 8 lanes are shown, and a lane the module does not have reads 0 against its thresholds"
            ));
            8
        }
    };
    if page(&img, &mut m, 2, "page 02h (thresholds)")? {
        m.checksums.extend(img.checksum("page 02h", p(2, 128), p(2, 254), p(2, 255)));
        for (measure, off) in [
            (Measure::Temperature, 128),
            (Measure::SupplyVoltage, 136),
            (Measure::TxPower, 176),
            (Measure::TxBias, 184),
            (Measure::RxPower, 192),
        ] {
            if let Some(mut t) = thresholds(&img, p(2, off), measure) {
                if measure == Measure::TxBias {
                    t = Thresholds {
                        high_alarm: t.high_alarm * bias_mult,
                        low_alarm: t.low_alarm * bias_mult,
                        high_warn: t.high_warn * bias_mult,
                        low_warn: t.low_warn * bias_mult,
                    };
                }
                m.thresholds.push((measure, t));
            }
        }
    }
    if page(&img, &mut m, 0x11, "page 11h (lane monitors and flags)")? {
        for l in 0..lanes {
            let o = 2 * l as usize;
            m.lanes.push(Lane {
                lane: l + 1,
                tx_power_mw: (lane_mon & 0x02 != 0).then(|| img.u16(p(0x11, 154) + o).map(power_mw)).flatten(),
                tx_bias_ma: (lane_mon & 0x01 != 0)
                    .then(|| img.u16(p(0x11, 170) + o).map(|r| bias_ma(r) * bias_mult))
                    .flatten(),
                rx_power_mw: (lane_mon & 0x04 != 0).then(|| img.u16(p(0x11, 186) + o).map(power_mw)).flatten(),
            });
        }
        // Lane status flags, one bit per lane (CMIS 5 page 11h): Tx fault 135, Tx LOS 136,
        // Tx CDR LOL 137, Rx LOS 147, Rx CDR LOL 148.
        for (byte, measure) in [
            (135, Measure::TxFault),
            (136, Measure::TxLos),
            (137, Measure::TxCdrLol),
            (147, Measure::RxLos),
            (148, Measure::RxCdrLol),
        ] {
            status_bits(&mut m, img.u8(p(0x11, byte)).unwrap_or(0), lanes, measure);
        }
        // Lane flags, one bit per lane: Tx power 139-142, Tx bias 143-146, Rx power 149-152
        // (high alarm, low alarm, high warn, low warn).
        for (first, measure) in [(139, Measure::TxPower), (143, Measure::TxBias), (149, Measure::RxPower)] {
            for (k, level, side) in [
                (0, Level::Alarm, "high"),
                (1, Level::Alarm, "low"),
                (2, Level::Warning, "high"),
                (3, Level::Warning, "low"),
            ] {
                let b = img.u8(p(0x11, first + k)).unwrap_or(0);
                for l in 0..lanes {
                    if b & (1 << l) != 0 {
                        m.findings.push(Finding { measure, lane: Some(l + 1), level, side, latched_flag: true });
                    }
                }
            }
        }
    }
    // VDM (page 01h byte 142 bit 6), groups from page 2Fh byte 128.
    if img.u8(p(1, 142)).is_some_and(|b| b & 0x40 != 0) && page(&img, &mut m, 0x2f, "page 2Fh (VDM groups)")? {
        let groups = (img.u8(p(0x2f, 128)).unwrap_or(0) & 0x03) + 1;
        for g in 0..groups {
            let (desc, samp, thr) = (0x20 + g, 0x24 + g, 0x28 + g);
            if !page(&img, &mut m, desc, "a VDM descriptor page (20h-23h)")?
                || !page(&img, &mut m, samp, "a VDM sample page (24h-27h)")?
            {
                break;
            }
            for i in 0..64usize {
                let d0 = img.u8(p(desc, 128 + 2 * i)).unwrap_or(0);
                let type_id = img.u8(p(desc, 129 + 2 * i)).unwrap_or(0);
                if type_id == 0 {
                    continue;
                }
                let Some(raw) = img.u16(p(samp, 128 + 2 * i)) else { continue };
                let Some(o) = observable(type_id) else { continue };
                let value = o.convert(raw);
                let set = (d0 >> 4) as usize;
                let thresholds = if img.has(p(thr, 128 + 8 * set), 8) {
                    let t = |k: usize| img.u16(p(thr, 128 + 8 * set + 2 * k)).map(|r| o.convert(r));
                    match (t(0), t(1), t(2), t(3)) {
                        (Some(high_alarm), Some(low_alarm), Some(high_warn), Some(low_warn))
                            if !(high_alarm == 0.0 && low_alarm == 0.0)
                                && low_alarm <= high_alarm
                                && low_warn <= high_warn =>
                        {
                            Some(Thresholds { high_alarm, low_alarm, high_warn, low_warn })
                        }
                        _ => None,
                    }
                } else {
                    None
                };
                // A bit error ratio above 1 cannot be: the sample is corrupt, shown but not judged.
                let impossible = (9..=16).contains(&type_id) && value > 1.0;
                if impossible {
                    m.notes.push(format!(
                        "VDM {} lane {} reads {value:e}, a bit error ratio above 1: the sample is corrupt and not judged",
                        o.name,
                        (d0 & 0x0f) + 1
                    ));
                }
                m.vdm.push(VdmValue {
                    type_id,
                    name: o.name.to_string(),
                    lane: (d0 & 0x0f) + 1,
                    value,
                    unit: o.unit,
                    level: thresholds.filter(|_| !impossible).map(|t| t.level(value)),
                    thresholds,
                });
            }
        }
    }
    compare(&mut m);
    Ok(m)
}

/// How a VDM observable's 16 bits read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Encoding {
    U16(f64),
    S16(f64),
    /// 5-bit exponent, 11-bit mantissa: m × 10^(e − 24).
    F16,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observable {
    pub name: &'static str,
    pub encoding: Encoding,
    pub unit: &'static str,
}

impl Observable {
    pub fn convert(&self, raw: u16) -> f64 {
        match self.encoding {
            Encoding::U16(s) => f64::from(raw) * s,
            Encoding::S16(s) => f64::from(raw as i16) * s,
            Encoding::F16 => f16(raw),
        }
    }
}

/// CMIS F16: value = mantissa × 10^(exponent − 24), exponent the top 5 bits.
pub fn f16(raw: u16) -> f64 {
    let e = i32::from(raw >> 11);
    let m = f64::from(raw & 0x07ff);
    m * 10f64.powi(e - 24)
}

/// The VDM observable types meshway decodes (CMIS 5.2 table of observable types; C-CMIS for
/// 128-147).
pub fn observable(id: u8) -> Option<Observable> {
    use Encoding::*;
    let (name, encoding, unit) = match id {
        1 => ("laser age", U16(1.0), "%"),
        2 => ("TEC current", S16(100.0 / 32767.0), "%"),
        3 => ("laser frequency error", S16(10.0), "MHz"),
        4 => ("laser temperature", S16(1.0 / 256.0), "°C"),
        5 => ("eSNR media input", U16(1.0 / 256.0), "dB"),
        6 => ("eSNR host input", U16(1.0 / 256.0), "dB"),
        7 => ("PAM4 level transition media input", U16(1.0 / 256.0), "dB"),
        8 => ("PAM4 level transition host input", U16(1.0 / 256.0), "dB"),
        9 => ("pre-FEC BER minimum media input", F16, ""),
        10 => ("pre-FEC BER minimum host input", F16, ""),
        11 => ("pre-FEC BER maximum media input", F16, ""),
        12 => ("pre-FEC BER maximum host input", F16, ""),
        13 => ("pre-FEC BER average media input", F16, ""),
        14 => ("pre-FEC BER average host input", F16, ""),
        15 => ("pre-FEC BER media input", F16, ""),
        16 => ("pre-FEC BER host input", F16, ""),
        17 => ("errored frames minimum media input", F16, ""),
        18 => ("errored frames minimum host input", F16, ""),
        19 => ("errored frames maximum media input", F16, ""),
        20 => ("errored frames maximum host input", F16, ""),
        21 => ("errored frames average media input", F16, ""),
        22 => ("errored frames average host input", F16, ""),
        23 => ("errored frames media input", F16, ""),
        24 => ("errored frames host input", F16, ""),
        // OIF-C-CMIS: one bias per modulator arm (types as SONiC's sonic-platform-common
        // C-CMIS table lists them): six observables, six names.
        128 => ("modulator bias X/I", U16(100.0 / 65535.0), "%"),
        129 => ("modulator bias X/Q", U16(100.0 / 65535.0), "%"),
        130 => ("modulator bias Y/I", U16(100.0 / 65535.0), "%"),
        131 => ("modulator bias Y/Q", U16(100.0 / 65535.0), "%"),
        132 => ("modulator bias X phase", U16(100.0 / 65535.0), "%"),
        133 => ("modulator bias Y phase", U16(100.0 / 65535.0), "%"),
        134 => ("chromatic dispersion", S16(1.0), "ps/nm"),
        135 => ("chromatic dispersion (long link)", S16(20.0), "ps/nm"),
        136 => ("differential group delay", U16(0.01), "ps"),
        137 => ("second-order PMD", U16(0.01), "ps²"),
        138 => ("polarization dependent loss", U16(0.1), "dB"),
        139 => ("OSNR", U16(0.1), "dB"),
        140 => ("eSNR", U16(0.1), "dB"),
        141 => ("carrier frequency offset", S16(1.0), "MHz"),
        142 => ("EVM", U16(100.0 / 65535.0), "%"),
        143 => ("Tx power", S16(0.01), "dBm"),
        144 => ("Rx total power", S16(0.01), "dBm"),
        145 => ("Rx signal power", S16(0.01), "dBm"),
        146 => ("SOP rate of change", U16(1.0), "krad/s"),
        147 => ("MER", U16(0.1), "dB"),
        _ => return None,
    };
    Some(Observable { name, encoding, unit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_and_dbm() {
        // Exponent 24 - 5 = 19, mantissa 1234: 1.234e-2 ... 1234 × 10^-5.
        let raw = (19u16 << 11) | 1234;
        assert!((f16(raw) - 0.01234).abs() < 1e-15);
        assert_eq!(f16(0), 0.0);
        assert_eq!(dbm(1.0), Some(0.0));
        assert!((dbm(0.5).unwrap() + 3.0103).abs() < 1e-4);
        assert_eq!(dbm(0.0), None);
    }

    /// A value at a threshold has not crossed it; only beyond it has.
    #[test]
    fn thresholds_are_crossed_only_beyond_them() {
        let t = Thresholds { high_alarm: 80.0, low_alarm: -5.0, high_warn: 75.0, low_warn: 0.0 };
        let at = [-5.0, -4.9, 0.0, 75.0, 75.1, 80.0, 80.1, -5.1, -0.1];
        let levels: Vec<Level> = at.iter().map(|&v| t.level(v)).collect();
        use Level::*;
        assert_eq!(levels, [Warning, Warning, Ok, Ok, Warning, Warning, Alarm, Alarm, Warning]);
        // A BER's thresholds with low limits of 0: a BER of 0 is a healthy link.
        let ber = Thresholds { high_alarm: 1.25e-3, low_alarm: 0.0, high_warn: 1.0e-3, low_warn: 0.0 };
        assert_eq!((ber.level(0.0), ber.level(1.0e-3), ber.level(1.5e-3)), (Ok, Ok, Alarm));
    }

    #[test]
    fn bad_images_are_errors_not_panics() {
        assert_eq!(decode(&[]), Err(OpticsError::Empty));
        assert_eq!(decode(&[0xff; 256]), Err(OpticsError::Blank(0xff)));
        assert_eq!(
            decode(&[0x06; 256]).unwrap_err().to_string(),
            "byte 0 (identifier) is 0x06 (XFP): not an SFP, QSFP or CMIS module"
        );
        assert!(matches!(decode(&[0x18; 100]), Err(OpticsError::Truncated { need: 256, .. })));
        // Every prefix of every kind, and garbage after the identifier: never a panic.
        for id in [0x03u8, 0x11, 0x18] {
            let mut img: Vec<u8> = (0..6400u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            img[0] = id;
            img[2] = 0; // paged
            for cut in (0..img.len()).step_by(61) {
                let _ = decode(&img[..cut]);
            }
            let _ = decode(&img);
        }
    }
}
