//! A minimal netlink client in safe Rust: interface statistics (rtnetlink `RTM_GETLINK` dump
//! with `IFLA_STATS64`, the counters `ip -s link` prints) and optical module EEPROM pages
//! (generic netlink family "ethtool", `ETHTOOL_MSG_MODULE_EEPROM_GET`, what `ethtool -m` reads
//! on kernels from 5.13). Message layouts: `linux/netlink.h`, `linux/rtnetlink.h`,
//! `linux/if_link.h`, `linux/genetlink.h`, `linux/ethtool_netlink.h`.

use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;
use std::os::fd::{AsRawFd, OwnedFd};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(nix::Error),
    #[error("netlink: {what}: {errno}")]
    Kernel { what: String, errno: nix::Error },
    #[error("netlink: malformed reply ({0})")]
    Malformed(&'static str),
    #[error("netlink: the kernel has no generic netlink family {0:?} (ethtool netlink needs Linux 5.6 or later)")]
    NoFamily(String),
    #[error("{0}: the driver does not expose a module EEPROM (no pluggable module, or a virtual interface)")]
    NoModule(String),
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 0x8000;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_STATS64: u16 = 23;
const IFLA_CARRIER: u16 = 33;
const IFLA_CARRIER_CHANGES: u16 = 35;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const ETHTOOL_MSG_MODULE_EEPROM_GET: u8 = 31;
const ETHTOOL_A_HEADER_DEV_NAME: u16 = 2;
const ETHTOOL_A_MODULE_EEPROM_HEADER: u16 = 1;
const ETHTOOL_A_MODULE_EEPROM_OFFSET: u16 = 2;
const ETHTOOL_A_MODULE_EEPROM_LENGTH: u16 = 3;
const ETHTOOL_A_MODULE_EEPROM_PAGE: u16 = 4;
const ETHTOOL_A_MODULE_EEPROM_BANK: u16 = 5;
const ETHTOOL_A_MODULE_EEPROM_I2C_ADDRESS: u16 = 6;
const ETHTOOL_A_MODULE_EEPROM_DATA: u16 = 7;

/// One interface's kernel counters (`struct rtnl_link_stats64`) and state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub index: i32,
    pub name: String,
    pub mtu: u32,
    /// RFC 2863 operational state is "up".
    pub oper_up: bool,
    pub carrier: bool,
    pub carrier_changes: u32,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    /// Frames with a bad CRC/FCS (drivers map the MAC's FCS error counter here).
    pub rx_crc_errors: u64,
    /// Frames the NIC could not take for lack of buffers (a discard counter).
    pub rx_missed_errors: u64,
}

/// Appends one attribute (4-byte aligned).
fn attr(buf: &mut Vec<u8>, typ: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&typ.to_ne_bytes());
    buf.extend_from_slice(payload);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// A netlink message: header with the final length, then `body`.
fn message(typ: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + body.len());
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&typ.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// The attributes in `b`: (type without flags, payload). Stops at the first malformed one.
pub fn attrs(b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while let (Some(len), Some(typ)) = (u16_at(b, i), u16_at(b, i + 2)) {
        let len = len as usize;
        if len < 4 || i + len > b.len() {
            break;
        }
        out.push((typ & 0x3fff, &b[i + 4..i + len]));
        i += (len + 3) & !3;
    }
    out
}

/// Netlink messages in one datagram: (type, body after the 16-byte header).
fn messages(b: &[u8]) -> Result<Vec<(u16, &[u8])>, NetlinkError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 16 <= b.len() {
        let len = u32_at(b, i).ok_or(NetlinkError::Malformed("header"))? as usize;
        let typ = u16_at(b, i + 4).ok_or(NetlinkError::Malformed("header"))?;
        if len < 16 || i + len > b.len() {
            return Err(NetlinkError::Malformed("message length"));
        }
        out.push((typ, &b[i + 16..i + len]));
        i += (len + 3) & !3;
    }
    Ok(out)
}

/// Parses one `RTM_NEWLINK` body (ifinfomsg then attributes).
pub fn parse_link(body: &[u8]) -> Option<LinkStats> {
    let index = i32::from_ne_bytes(body.get(4..8)?.try_into().ok()?);
    let mut s = LinkStats { index, ..Default::default() };
    for (typ, p) in attrs(body.get(16..)?) {
        match typ {
            IFLA_IFNAME => s.name = String::from_utf8_lossy(p.split(|&c| c == 0).next().unwrap_or(p)).into_owned(),
            IFLA_MTU => s.mtu = u32_at(p, 0)?,
            IFLA_OPERSTATE => s.oper_up = p.first() == Some(&6),
            IFLA_CARRIER => s.carrier = p.first() == Some(&1),
            IFLA_CARRIER_CHANGES => s.carrier_changes = u32_at(p, 0)?,
            IFLA_STATS64 => {
                let f = |k: usize| u64_at(p, 8 * k);
                s.rx_packets = f(0)?;
                s.tx_packets = f(1)?;
                s.rx_bytes = f(2)?;
                s.tx_bytes = f(3)?;
                s.rx_errors = f(4)?;
                s.tx_errors = f(5)?;
                s.rx_dropped = f(6)?;
                s.tx_dropped = f(7)?;
                s.rx_crc_errors = f(12)?;
                s.rx_missed_errors = f(15)?;
            }
            _ => {}
        }
    }
    (!s.name.is_empty()).then_some(s)
}

struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    fn open(proto: SockProtocol) -> Result<Socket, NetlinkError> {
        let fd = socket::socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto)
            .map_err(NetlinkError::Socket)?;
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(NetlinkError::Socket)?;
        socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &TimeVal::new(2, 0)).map_err(NetlinkError::Socket)?;
        Ok(Socket { fd, seq: 1 })
    }

    /// Sends one request and collects the bodies of the answers of type `want` until the dump
    /// ends (or, without `dump`, until the first answer or acknowledgement).
    fn request(
        &mut self,
        typ: u16,
        flags: u16,
        body: &[u8],
        want: u16,
        what: &str,
    ) -> Result<Vec<Vec<u8>>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let m = message(typ, flags | NLM_F_REQUEST | NLM_F_ACK, self.seq, body);
        socket::send(self.fd.as_raw_fd(), &m, MsgFlags::empty()).map_err(NetlinkError::Socket)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        // Bounded: a dump of 100,000 interfaces fits in far fewer datagrams than this.
        for _ in 0..100_000 {
            let n = socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(NetlinkError::Socket)?;
            for (t, b) in messages(&buf[..n])? {
                match t {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = u32_at(b, 0).ok_or(NetlinkError::Malformed("error"))? as i32;
                        if code == 0 {
                            // The acknowledgement: a non-dump request is complete.
                            if !dump {
                                return Ok(out);
                            }
                            continue;
                        }
                        return Err(NetlinkError::Kernel {
                            what: what.to_string(),
                            errno: nix::Error::from_raw(-code),
                        });
                    }
                    t if t == want => out.push(b.to_vec()),
                    _ => {}
                }
            }
        }
        Err(NetlinkError::Malformed("endless dump"))
    }
}

/// Every interface of this network namespace with its counters, in kernel index order.
pub fn links() -> Result<Vec<LinkStats>, NetlinkError> {
    let mut s = Socket::open(SockProtocol::NetlinkRoute)?;
    let ifinfo = [0u8; 16]; // AF_UNSPEC: all interfaces
    let bodies = s.request(RTM_GETLINK, NLM_F_DUMP, &ifinfo, RTM_NEWLINK, "link dump")?;
    Ok(bodies.iter().filter_map(|b| parse_link(b)).collect())
}

/// A generic netlink request body: genlmsghdr (cmd, version 1) then attributes.
fn genl(cmd: u8, attrs: &[u8]) -> Vec<u8> {
    let mut b = vec![cmd, 1, 0, 0];
    b.extend_from_slice(attrs);
    b
}

fn family_id(s: &mut Socket, name: &str) -> Result<u16, NetlinkError> {
    let mut a = Vec::new();
    let mut z = name.as_bytes().to_vec();
    z.push(0);
    attr(&mut a, CTRL_ATTR_FAMILY_NAME, &z);
    let r = s.request(GENL_ID_CTRL, 0, &genl(CTRL_CMD_GETFAMILY, &a), GENL_ID_CTRL, "family lookup");
    let bodies = match r {
        Err(NetlinkError::Kernel { errno: nix::Error::ENOENT, .. }) => return Err(NetlinkError::NoFamily(name.into())),
        r => r?,
    };
    bodies
        .iter()
        .flat_map(|b| attrs(b.get(4..).unwrap_or_default()))
        .find(|(t, _)| *t == CTRL_ATTR_FAMILY_ID)
        .and_then(|(_, p)| u16_at(p, 0))
        .ok_or(NetlinkError::Malformed("family id"))
}

/// The `ETHTOOL_MSG_MODULE_EEPROM_GET` request for 128 bytes or less within one half page.
pub fn module_eeprom_request(ifname: &str, i2c: u8, page: u8, bank: u8, offset: u32, len: u32) -> Vec<u8> {
    let mut hdr = Vec::new();
    let mut z = ifname.as_bytes().to_vec();
    z.push(0);
    attr(&mut hdr, ETHTOOL_A_HEADER_DEV_NAME, &z);
    let mut a = Vec::new();
    attr(&mut a, ETHTOOL_A_MODULE_EEPROM_HEADER | NLA_F_NESTED, &hdr);
    attr(&mut a, ETHTOOL_A_MODULE_EEPROM_OFFSET, &offset.to_ne_bytes());
    attr(&mut a, ETHTOOL_A_MODULE_EEPROM_LENGTH, &len.to_ne_bytes());
    attr(&mut a, ETHTOOL_A_MODULE_EEPROM_PAGE, &[page]);
    attr(&mut a, ETHTOOL_A_MODULE_EEPROM_BANK, &[bank]);
    attr(&mut a, ETHTOOL_A_MODULE_EEPROM_I2C_ADDRESS, &[i2c]);
    genl(ETHTOOL_MSG_MODULE_EEPROM_GET, &a)
}

/// Reads module EEPROM through the kernel, one half page (128 bytes) per request.
pub struct ModuleReader {
    sock: Socket,
    family: u16,
    ifname: String,
}

impl ModuleReader {
    pub fn open(ifname: &str) -> Result<ModuleReader, NetlinkError> {
        let mut sock = Socket::open(SockProtocol::NetlinkGeneric)?;
        let family = family_id(&mut sock, "ethtool")?;
        Ok(ModuleReader { sock, family, ifname: ifname.to_string() })
    }

    /// `len` bytes at `offset` (0-255) of `page` and `bank` at I2C address `i2c` (0x50, or 0x51
    /// for SFP diagnostics).
    pub fn read(&mut self, i2c: u8, page: u8, bank: u8, offset: u32, len: u32) -> Result<Vec<u8>, NetlinkError> {
        let body = module_eeprom_request(&self.ifname, i2c, page, bank, offset, len);
        let what = format!("{}: module EEPROM page {page:#04x} at {i2c:#04x}", self.ifname);
        let bodies = match self.sock.request(self.family, 0, &body, self.family, &what) {
            Err(NetlinkError::Kernel { errno: nix::Error::EOPNOTSUPP, .. }) if page == 0 && offset == 0 => {
                return Err(NetlinkError::NoModule(self.ifname.clone()))
            }
            Err(NetlinkError::Kernel { errno: nix::Error::ENODEV, .. }) => {
                return Err(NetlinkError::Kernel {
                    what: format!("{}: no such interface", self.ifname),
                    errno: nix::Error::ENODEV,
                })
            }
            r => r?,
        };
        bodies
            .iter()
            .flat_map(|b| attrs(b.get(4..).unwrap_or_default()))
            .find(|(t, _)| *t == ETHTOOL_A_MODULE_EEPROM_DATA)
            .map(|(_, p)| p.to_vec())
            .ok_or(NetlinkError::Malformed("no EEPROM data"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_with_padding() {
        let mut b = Vec::new();
        attr(&mut b, 3, b"eth0\0");
        attr(&mut b, 4, &1500u32.to_ne_bytes());
        assert_eq!(b.len(), 12 + 8);
        let a = attrs(&b);
        assert_eq!(a, vec![(3, &b"eth0\0"[..]), (4, &1500u32.to_ne_bytes()[..])]);
        // A truncated attribute ends the list instead of panicking.
        assert_eq!((attrs(&b[..8]).len(), attrs(&b[..14]).len()), (0, 1));
        assert_eq!(attrs(&[0xff, 0xff, 1, 0]).len(), 0);
    }

    #[test]
    fn a_link_message_parses_and_garbage_does_not_panic() {
        let mut body = vec![0u8; 16];
        body[4..8].copy_from_slice(&7i32.to_ne_bytes());
        attr(&mut body, IFLA_IFNAME, b"veth1\0");
        attr(&mut body, IFLA_MTU, &9000u32.to_ne_bytes());
        attr(&mut body, IFLA_OPERSTATE, &[6]);
        attr(&mut body, IFLA_CARRIER_CHANGES, &3u32.to_ne_bytes());
        let stats: Vec<u8> = (0..24u64).flat_map(|k| (k * 10).to_ne_bytes()).collect();
        attr(&mut body, IFLA_STATS64, &stats);
        let l = parse_link(&body).unwrap();
        assert_eq!((l.index, l.name.as_str(), l.mtu, l.oper_up, l.carrier_changes), (7, "veth1", 9000, true, 3));
        assert_eq!((l.rx_packets, l.tx_bytes, l.rx_crc_errors, l.rx_missed_errors), (0, 30, 120, 150));
        for cut in 0..body.len() {
            let _ = parse_link(&body[..cut]);
        }
        let m = message(RTM_NEWLINK, 0, 1, &body);
        assert_eq!(messages(&m).unwrap().len(), 1);
        assert!(messages(&m[..20]).is_err() || messages(&m[..20]).unwrap().is_empty());
    }

    #[test]
    fn module_eeprom_request_layout() {
        let b = module_eeprom_request("eth1", 0x50, 0x11, 0, 128, 128);
        assert_eq!(&b[..4], &[ETHTOOL_MSG_MODULE_EEPROM_GET, 1, 0, 0]);
        let a = attrs(&b[4..]);
        let types: Vec<u16> = a.iter().map(|x| x.0).collect();
        assert_eq!(types, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(attrs(a[0].1), vec![(ETHTOOL_A_HEADER_DEV_NAME, &b"eth1\0"[..])]);
        assert_eq!((a[3].1, a[5].1), (&[0x11u8][..], &[0x50u8][..]));
    }
}
