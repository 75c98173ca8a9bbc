//! Captured traffic: what operators learn from `tcpdump` and `tshark`, in meshway's model of
//! the network.
//!
//! | module | owns |
//! |---|---|
//! | [`capture`] | pcap and pcapng files, streamed; damaged files stop at the damage, named |
//! | [`places`] | prefixes inside the cluster, GPUs of an address plan (host, leaf, site), a flow's scope |
//! | [`flows`] | unidirectional 5-tuple flows in a bounded table (the rest counted beyond it), TCP retransmissions / dup ACKs / zero windows, RoCEv2 ACK/NAK/CNP |
//! | [`export`] | sFlow v5 and IPFIX carried in a capture: an estimated flow table |
//! | [`synth`] | synthetic captures for tests and benchmarks |
//! | [`analysis`] | east-west vs north-south, sizes, elephants, talkers, matrices, critical paths, a `flows` workload |
//!
//! Pure: bytes in, reports out.

pub mod analysis;
pub mod capture;
pub mod export;
pub mod flows;
pub mod places;
pub mod synth;
