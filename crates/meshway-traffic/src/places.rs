//! Where addresses are: prefixes inside the cluster, GPUs of a fabric's address plan (host,
//! leaf, site), and the scope of a flow between two addresses. Owned, so both the flow table
//! (placing packets it keeps no flow for) and the analysis use it.

use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// An IPv4 or IPv6 prefix ("10.0.0.0/8", "fd00::/8").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cidr {
    pub net: IpAddr,
    pub len: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, l) = s.trim().split_once('/').unwrap_or((s.trim(), ""));
        let net: IpAddr = a.parse().map_err(|_| format!("{s:?}: expected a prefix such as 10.0.0.0/8"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = if l.is_empty() { max } else { l.parse().map_err(|_| format!("{s:?}: bad prefix length"))? };
        if len > max {
            return Err(format!("{s:?}: prefix length {len} over {max}"));
        }
        Ok(Cidr { net, len })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = if self.len == 0 { 0 } else { u32::MAX << (32 - self.len) };
                u32::from(n) & m == u32::from(a) & m
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = if self.len == 0 { 0 } else { u128::MAX << (128 - self.len) };
                u128::from(n) & m == u128::from(a) & m
            }
            _ => false,
        }
    }
}

/// Where a flow runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Both ends GPUs of one host (NVLink traffic seen on a NIC is rare; loopback captures).
    SameHost,
    /// Both ends under one leaf (rack, or rail leaf).
    SameLeaf,
    /// Both ends in one site, across leaves.
    CrossLeaf,
    /// Both ends GPUs, in different sites (over DCI).
    CrossSite,
    /// Both ends inside the given prefixes (no fabric to say more).
    EastWest,
    /// One end inside, one outside.
    NorthSouth,
    /// Neither end inside.
    External,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::SameHost => "same host",
            Scope::SameLeaf => "same leaf",
            Scope::CrossLeaf => "across leaves",
            Scope::CrossSite => "across sites",
            Scope::EastWest => "east-west",
            Scope::NorthSouth => "north-south",
            Scope::External => "external",
        }
    }

    pub fn is_east_west(self) -> bool {
        !matches!(self, Scope::NorthSouth | Scope::External)
    }
}

/// Where a GPU sits: its host, leaf and site, as indices (the leaf and site into
/// [`Places`]' sorted names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub host: u32,
    pub leaf: u32,
    pub site: u32,
}

/// GPUs by address and where each sits: owned (no borrow of the fabric), so a flow table can
/// place the packets it keeps no flow for.
#[derive(Debug, Default)]
pub struct Places {
    pub(crate) by_ip: HashMap<IpAddr, u32>,
    /// Per rank.
    pub(crate) at: Vec<Place>,
    /// Leaf and site names, sorted ("-": a GPU on no leaf).
    pub(crate) leaves: Vec<String>,
    pub(crate) sites: Vec<String>,
}

impl Places {
    /// Where ranks `a` and `b` run relative to each other.
    fn scope(&self, a: u32, b: u32) -> Scope {
        let (x, y) = (self.at[a as usize], self.at[b as usize]);
        if x.site != y.site {
            Scope::CrossSite
        } else if x.host == y.host {
            Scope::SameHost
        } else if x.leaf == y.leaf {
            Scope::SameLeaf
        } else {
            Scope::CrossLeaf
        }
    }
}

/// A flow's scope and the places of its ends: from the prefixes inside the cluster and the
/// fabric's address plan, if there is one.
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    internal: Vec<Cidr>,
    places: Option<Arc<Places>>,
}

impl Classifier {
    /// From the prefixes inside the cluster and an address plan's places
    /// (`AddressPlan::places`), if there is one.
    pub fn new(internal: &[Cidr], places: Option<Arc<Places>>) -> Classifier {
        Classifier { internal: internal.to_vec(), places }
    }

    fn rank(&self, ip: IpAddr) -> Option<u32> {
        self.places.as_ref().and_then(|p| p.by_ip.get(&ip).copied())
    }

    fn inside(&self, ip: IpAddr) -> bool {
        self.internal.iter().any(|c| c.contains(ip)) || self.rank(ip).is_some()
    }

    /// Where a flow from `src` to `dst` runs: placed on the fabric when both ends are GPUs
    /// of its plan, else by whether each end is inside.
    pub fn scope(&self, src: IpAddr, dst: IpAddr) -> Scope {
        self.ends(src, dst).0
    }

    /// The scope of a flow from `src` to `dst`, and the places of its ends that are GPUs.
    pub fn ends(&self, src: IpAddr, dst: IpAddr) -> (Scope, Option<Place>, Option<Place>) {
        let (a, b) = (self.rank(src), self.rank(dst));
        let place = |r: Option<u32>| Some(self.places.as_ref()?.at[r? as usize]);
        let scope = match (&self.places, a, b) {
            (Some(p), Some(a), Some(b)) => p.scope(a, b),
            _ => match (self.inside(src), self.inside(dst)) {
                (true, true) => Scope::EastWest,
                (false, false) => Scope::External,
                _ => Scope::NorthSouth,
            },
        };
        (scope, place(a), place(b))
    }
}
