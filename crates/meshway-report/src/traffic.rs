//! `meshway traffic` as text.

use crate::format::{pct, rate_f64, span, thousands};
use meshway_traffic::analysis::{FlowRow, TrafficReport};
use std::fmt::Write as _;

/// Bytes in decimal units, as network people count them: "13.7 MB".
fn b(n: u64) -> String {
    let v = n as f64;
    for (unit, scale) in [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)] {
        if v >= scale {
            return format!("{:.1} {unit}", v / scale);
        }
    }
    format!("{n} B")
}

fn flow_line(i: usize, r: &FlowRow) -> String {
    let k = &r.flow.key;
    let end = |ip: std::net::IpAddr, port: u16, gpu: &Option<String>| {
        // An IPv6 address before a port in brackets (RFC 5952, section 6): fd00::1:9000 is an
        // address of its own.
        let a = match (ip, port) {
            (_, 0) => ip.to_string(),
            (std::net::IpAddr::V6(v6), _) => format!("[{v6}]:{port}"),
            (std::net::IpAddr::V4(v4), _) => format!("{v4}:{port}"),
        };
        match gpu {
            Some(g) => format!("{a} ({g})"),
            None => a,
        }
    };
    // Each trouble the flow had, by its count.
    let mut counts: Vec<(u64, &str)> = Vec::new();
    if let Some(t) = &r.flow.tcp {
        counts.extend([(t.retransmissions, "retrans"), (t.dup_acks, "dup ACKs"), (t.zero_windows, "zero windows")]);
    }
    if let Some(x) = &r.flow.roce {
        counts.extend([
            (x.naks, "NAKs"),
            (x.rnr_naks, "RNR NAKs"),
            (x.cnps, "CNPs"),
            (x.psn_resent, "resent"),
            (x.psn_gaps, "missing"),
            (x.ecn_ce, "CE-marked"),
        ]);
    }
    let flags: Vec<String> = counts.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
    format!(
        "  {:>3}  {:<6}  {} -> {}  {}  {} pkts  {}  {}  {}{}\n",
        i + 1,
        r.protocol,
        end(k.src, k.sport, &r.src_gpu),
        end(k.dst, k.dport, &r.dst_gpu),
        b(r.flow.bytes),
        thousands(r.flow.packets),
        span(r.flow.duration_ns()),
        rate_f64(r.rate_bps),
        r.scope.name(),
        if flags.is_empty() { String::new() } else { format!("  [{}]", flags.join(", ")) }
    )
}

/// `meshway traffic`: the capture, where its bytes run, sizes, top flows and talkers,
/// matrices, critical links and TCP/RoCEv2 trouble.
pub fn traffic_text(name: &str, r: &TrafficReport) -> String {
    let mut s = String::new();
    let secs = r.duration_ns as f64 / 1e9;
    let x = &r.beyond_table;
    let about = if x.flows_estimated { "about " } else { "" };
    // Frames on link types meshway does not decode are in the file but not in the figures.
    let undecoded = r.capture.other_linktype_packets;
    let _ = writeln!(
        s,
        "{name}: {}, {} packets{}, {} over {}{}, {} flows{}",
        r.capture.format,
        thousands(r.packets),
        if undecoded > 0 {
            format!(" (+ {} on link types meshway does not decode)", thousands(undecoded))
        } else {
            String::new()
        },
        b(r.bytes),
        span(r.duration_ns),
        if secs > 0.0 { format!(" ({})", rate_f64(r.bytes as f64 * 8.0 / secs)) } else { String::new() },
        thousands(r.flows),
        if x.packets > 0 { format!(" + {about}{} beyond the flow table", thousands(x.flows)) } else { String::new() }
    );
    if x.packets > 0 {
        let _ = writeln!(
            s,
            "  flow table full at {} flows (--max-flows): {} packets, {} of {about}{} more flows counted without a flow entry, in the totals, protocol and scope bytes, shares, GPU talkers, matrices and RoCEv2 NAK/CNP counts; not in flow counts, sizes, top flows, critical links or TCP/PSN analysis",
            thousands(r.max_flows),
            thousands(x.packets),
            b(x.bytes),
            thousands(x.flows)
        );
    }
    if r.from_exported {
        s.push_str(
            "  (the flows sFlow samples and IPFIX records describe: sFlow counts scaled by the sampling rate)\n",
        );
    }
    if let Some(t) = &r.telemetry {
        let agents: Vec<String> = t.agents.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(
            s,
            "  flow telemetry in the capture: {} sFlow datagrams ({} flow samples, {} counter samples), {} IPFIX messages ({} records{}), {} malformed; from {}{}",
            thousands(t.sflow_datagrams),
            thousands(t.sflow_flow_samples),
            thousands(t.sflow_counter_samples),
            thousands(t.ipfix_messages),
            thousands(t.ipfix_records),
            if t.ipfix_unknown_template_sets > 0 {
                format!(", {} sets before their template", t.ipfix_unknown_template_sets)
            } else {
                String::new()
            },
            t.malformed,
            agents.join(", "),
            if r.from_exported { "" } else { "; --exported analyses the traffic they describe" }
        );
    }
    let o = &r.other;
    if o.arp + o.non_ip + o.undecodable + r.capture.other_linktype_packets > 0 {
        let _ = writeln!(
            s,
            "  not in flows: {} ARP, {} other non-IP, {} undecodable, {} on other link types",
            o.arp, o.non_ip, o.undecodable, r.capture.other_linktype_packets
        );
    }
    if o.orphan_fragments > 0 {
        let _ = writeln!(
            s,
            "  {} IP fragments came without their first fragment (before them): their ports are unknown, counted in flows of port 0",
            o.orphan_fragments
        );
    }
    if r.capture.bad_length_packets + r.capture.short_wire_packets + r.capture.bad_time_packets > 0 {
        let _ = writeln!(
            s,
            "  corrupt fields: {} wire lengths above 1 MiB and {} below the bytes captured (counted at their captured length), {} timestamps past 2116 or with a fraction of a second of 1 s or more (given the previous packet's time, or left out before the first good one)",
            r.capture.bad_length_packets, r.capture.short_wire_packets, r.capture.bad_time_packets
        );
    }
    if r.capture.untimed_packets > 0 {
        let _ = writeln!(
            s,
            "  {} pcapng Simple Packet Blocks carry no time: each is placed at the packet before it (or the first after it)",
            thousands(r.capture.untimed_packets)
        );
    }
    let protos: Vec<String> =
        r.protocols.iter().map(|(p, n, by)| format!("{p} {} in {} flows", b(*by), thousands(*n))).collect();
    let _ = writeln!(s, "  protocols: {}", protos.join(", "));
    let _ = writeln!(s, "  east-west {} of flow bytes", pct(r.east_west_share));
    s.push_str("\n  where            flows        bytes   share\n");
    for row in &r.scopes {
        let _ = writeln!(
            s,
            "  {:<14} {:>7} {:>12} {:>7}",
            row.scope.name(),
            thousands(row.flows),
            b(row.bytes),
            pct(row.share)
        );
    }
    let p = r.size_percentiles;
    let _ = writeln!(
        s,
        "\n  flow sizes: median {}, p90 {}, p99 {}, largest {}; elephants (>= {}): {} flows, {} of bytes",
        b(p[0]),
        b(p[1]),
        b(p[2]),
        b(p[3]),
        b(r.elephant_bytes),
        thousands(r.elephants),
        pct(r.elephant_share)
    );
    s.push_str("  size           flows        bytes\n");
    for bin in r.size_bins.iter().filter(|x| x.flows > 0) {
        let _ = writeln!(s, "  {:<12} {:>7} {:>12}", bin.label, thousands(bin.flows), b(bin.bytes));
    }
    s.push_str("\n  largest flows\n");
    for (i, f) in r.top_flows.iter().take(r.top).enumerate() {
        s.push_str(&flow_line(i, f));
    }
    s.push_str("\n  top talkers    sent         received     flows\n");
    for t in &r.top_talkers {
        let who = match &t.gpu {
            Some(g) => format!("{} ({g})", t.address),
            None => t.address.to_string(),
        };
        let _ = writeln!(s, "  {who:<24} {:>12} {:>12} {:>6}", b(t.sent_bytes), b(t.received_bytes), t.flows);
    }
    for m in &r.matrices {
        let level = if m.level == "leaf" { "leaves" } else { "sites" };
        let _ = writeln!(s, "\n  traffic matrix between {level} (bytes, row sends to column)");
        let w = m.names.iter().map(|n| n.len()).max().unwrap_or(4).max(10);
        let _ = write!(s, "  {:<w$}", "");
        for n in &m.names {
            let _ = write!(s, " {n:>w$}");
        }
        s.push('\n');
        for (i, row) in m.bytes.iter().enumerate() {
            let _ = write!(s, "  {:<w$}", m.names[i]);
            for v in row {
                let _ = write!(s, " {:>w$}", b(*v));
            }
            s.push('\n');
        }
    }
    if !r.critical_links.is_empty() {
        s.push_str(
            "\n  critical links (the largest flows routed over the fabric as ECMP hashes them; #n: nth largest)\n",
        );
        for l in &r.critical_links {
            let flows: Vec<String> = l.flows.iter().map(|i| format!("#{}", i + 1)).collect();
            let mut trouble = Vec::new();
            if l.tcp_retransmissions > 0 {
                trouble.push(format!("{} TCP retrans", l.tcp_retransmissions));
            }
            if l.roce_naks > 0 {
                trouble.push(format!("{} NAKs", l.roce_naks));
            }
            if l.roce_cnps > 0 {
                trouble.push(format!("{} CNPs", l.roce_cnps));
            }
            let _ = writeln!(
                s,
                "  {} -> {} ({}, {})  {}, {} over the capture, flows {}{}",
                l.from,
                l.to,
                l.class.name(),
                rate_f64(l.rate_bps as f64),
                b(l.bytes),
                l.utilization.map_or("n/a busy (it spans no time)".to_string(), |u| format!("{} busy", pct(u))),
                flows.join(" "),
                if trouble.is_empty() { String::new() } else { format!("  [{}]", trouble.join(", ")) }
            );
        }
    }
    let t = &r.trouble;
    if r.from_exported {
        s.push_str(
            "\n  TCP and RoCEv2 trouble: not analysed (sFlow samples and IPFIX records hold no sequence numbers)\n",
        );
    } else {
        let _ = writeln!(
            s,
            "\n  TCP: {} flows, {} retransmissions, {} duplicate ACKs, {} zero windows",
            thousands(t.tcp_flows),
            thousands(t.retransmissions),
            thousands(t.dup_acks),
            thousands(t.zero_windows)
        );
        let _ = writeln!(
            s,
            "  RoCEv2: {} flows, {} NAKs, {} RNR NAKs, {} CNPs; {} packets resent, {} missing from their PSN sequence, {} CE-marked",
            thousands(t.rocev2_flows),
            thousands(t.naks),
            thousands(t.rnr_naks),
            thousands(t.cnps),
            thousands(t.psn_resent),
            thousands(t.psn_gaps),
            thousands(t.ecn_ce)
        );
    }
    if !r.troubled_flows.is_empty() {
        s.push_str("  flows with trouble\n");
        for (i, f) in r.troubled_flows.iter().enumerate() {
            s.push_str(&flow_line(i, f));
        }
    }
    if let Some(why) = &r.capture.stopped_early {
        let _ = writeln!(s, "\n  note: {why}; the numbers above cover what was read");
    }
    s
}
