//! `meshway traffic`: a capture's flows, where they run on the fabric, and what went wrong.

use anyhow::{bail, Context, Result};
use meshway_fabric::{Catalog, Scenario};
use meshway_traffic::analysis::{self, AddressPlan, Cidr, Classifier, Options};
use meshway_traffic::capture;
use meshway_traffic::export::Exported;
use meshway_traffic::flows::{Flows, DEFAULT_MAX_FLOWS};
use meshway_units::Bytes;
use std::net::Ipv4Addr;
use std::path::PathBuf;

pub const HELP: &str = "Examples:
  meshway traffic capture.pcapng
  meshway traffic capture.pcap --internal 10.0.0.0/8,fd00::/8 --top 20
  meshway traffic testbed.pcap --scenario examples/testbed-2x2.toml \\
      --write-flows captured.csv
  tcpdump -i eth0 -s 128 -w - | meshway traffic - --json

Reads pcap or pcapng (tcpdump, tshark, dumpcap; Ethernet, raw IP and Linux
cooked link types; packets cut by a snap length still count their wire
length). Flows are one-way 5-tuples as NetFlow counts them. With --scenario,
GPU rank r of the fabric has address --base-address + r (the testbed's plan by
default), flows between GPUs are placed on hosts, leaves and sites, the
largest ones are routed over the fabric as ECMP would hash them (critical
links), and --write-flows writes them as a `flows` workload for `meshway
simulate`. TCP retransmissions (a segment starting before the next expected
byte, partial overlaps included, keep-alives not; out-of-order segments count
too), duplicate ACKs and zero windows follow Wireshark's tcp.analysis rules;
RoCEv2 (UDP 4791) NAKs and CNPs come from the
transport headers. The flow table holds --max-flows flows (1,000,000 by
default; about 120 bytes a flow, 200 with TCP analysis: a million one-packet
flows peaked at 127 MB). Packets of flows beyond it still count in the totals,
protocol and scope bytes, shares and matrices, and the report says how many
flows, packets and bytes were beyond it.";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The capture file (pcap or pcapng), or - for standard input.
    file: PathBuf,
    /// A scenario whose fabric the captured addresses belong to.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Address of GPU rank 0 in the scenario's fabric (rank r has this + r).
    #[arg(long, default_value = "10.64.0.1", value_name = "IPV4")]
    base_address: Ipv4Addr,
    /// Prefixes inside the cluster (comma-separated): both ends inside is east-west.
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    internal: Vec<String>,
    /// Flows of at least this size are elephants.
    #[arg(long, default_value = "10MB", value_name = "SIZE")]
    elephant: Bytes,
    /// Rows in the top lists.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    top: u32,
    /// How many of the largest flows between GPUs are routed over the fabric for the critical links.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    critical_flows: usize,
    /// The most flows the flow table holds (an assumption: about 120 bytes a flow, 200 with
    /// TCP analysis, measured on one-packet flows); packets of further flows count in the
    /// totals, shares and matrices but have no flow entry of their own.
    #[arg(long, default_value_t = DEFAULT_MAX_FLOWS as u32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_flows: u32,
    /// Analyse the flows that sFlow (UDP 6343) and IPFIX (UDP 4739) in the capture describe
    /// instead of the captured packets.
    #[arg(long)]
    exported: bool,
    /// Write the flows between GPUs as a flows workload (CSV); needs --scenario.
    #[arg(long, value_name = "FILE", requires = "scenario")]
    write_flows: Option<PathBuf>,
    /// A catalog file whose entries replace or add to the built-in catalog.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &Args, cat: &Catalog) -> Result<String> {
    let mut internal = Vec::new();
    for c in &a.internal {
        internal.push(c.parse::<Cidr>().map_err(|e| anyhow::anyhow!("--internal: {e}"))?);
    }
    let name = a.file.display().to_string();
    // The fabric first: a bad scenario or address plan is refused before a capture is read,
    // and the flow table places packets it has no room for by the plan.
    let built = match &a.scenario {
        None => None,
        Some(p) => {
            let text =
                meshway_units::files::read_text(p).with_context(|| format!("cannot read scenario {}", p.display()))?;
            let s = Scenario::parse(&text, &p.display().to_string())?;
            Some(s.build(cat)?)
        }
    };
    let plan = match &built {
        None => None,
        Some(f) => Some(AddressPlan::new(f, cat, a.base_address).map_err(|e| {
            anyhow::anyhow!(
                "--base-address {} + {} GPUs passes {} (GPU rank r has the base address + r): give at most {}",
                e.base,
                e.gpus,
                Ipv4Addr::BROADCAST,
                e.highest
            )
        })?),
    };
    let classifier = Classifier::new(&internal, plan.as_ref().map(AddressPlan::places));
    let max_flows = a.max_flows as usize;
    let mut flows = Flows::with_limit(max_flows, classifier.clone());
    let mut exported = Exported::new();
    exported.flows = Flows::with_limit(max_flows, classifier);
    let mut each = |p: &capture::Packet<'_>| {
        if let Some(d) = flows.add(p) {
            exported.offer(d.src, d.dport, d.payload, p.ts_ns);
        }
    };
    let info = if name == "-" {
        capture::read(std::io::stdin(), &mut each)
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("cannot read {name}"))?;
        if f.metadata().is_ok_and(|m| m.is_dir()) {
            bail!("{name} is a directory: give a capture file (pcap or pcapng), or - for standard input");
        }
        capture::read(std::io::BufReader::with_capacity(1 << 20, f), &mut each)
    }
    .with_context(|| format!("{name}: cannot read the capture"))?;
    let telemetry = exported.stats.clone();
    if a.exported {
        if telemetry.sflow_datagrams + telemetry.ipfix_messages == 0 {
            bail!("{name}: --exported: the capture holds no sFlow (UDP 6343) or IPFIX (UDP 4739) datagrams");
        }
        flows = exported.flows;
    }
    if let Some(why) = &info.stopped_early {
        eprintln!("warning: {name}: {why}");
    }
    if info.other_linktype_packets > 0 {
        eprintln!(
            "warning: {name}: {} of {} packets are on link types meshway does not decode (it reads Ethernet, raw IP, IPv4, IPv6 and Linux cooked captures)",
            info.other_linktype_packets, info.packets
        );
    }
    let o =
        Options { internal, elephant_bytes: a.elephant.get(), top: a.top as usize, critical_flows: a.critical_flows };
    let mut rep = analysis::analyse(info, &flows, plan.as_ref(), &o);
    rep.from_exported = a.exported;
    rep.telemetry = (telemetry.sflow_datagrams + telemetry.ipfix_messages > 0).then_some(telemetry);
    if let (Some(path), Some(plan)) = (&a.write_flows, &plan) {
        let (csv, n) = analysis::flows_csv(&flows, plan);
        if n == 0 {
            bail!("no flows between the fabric's GPUs to write (is --base-address {} right?)", a.base_address);
        }
        if flows.beyond.packets > 0 {
            eprintln!(
                "warning: {} packets of flows beyond the flow table (--max-flows {}) are not in {}",
                flows.beyond.packets,
                a.max_flows,
                path.display()
            );
        }
        let inputs: Vec<&std::path::Path> =
            [Some(a.file.as_path()), a.scenario.as_deref(), a.catalog.as_deref()].into_iter().flatten().collect();
        crate::output::write(path, csv.as_bytes(), &inputs)?;
        eprintln!(
            "wrote {} flows to {}; replay them with [[workload]] kind = \"flows\" file = \"{}\"",
            n,
            path.display(),
            path.display()
        );
    }
    if a.json {
        let mut v = serde_json::to_value(&rep)?;
        v["file"] = serde_json::Value::String(name);
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    Ok(meshway_report::traffic::traffic_text(&name, &rep))
}
