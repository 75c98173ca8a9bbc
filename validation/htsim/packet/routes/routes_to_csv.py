#!/usr/bin/env python3
"""Turn the route-printing htsim_roce's stderr into a meshway flow list with pinned paths.

Usage: routes_to_csv.py CMFILE ROUTES_ERR OUT_CSV

CMFILE      the htsim connection matrix the run used (flow order and sizes)
ROUTES_ERR  the patched htsim_roce's stderr: ROUTE_FLOW / ROUTE_HOP (/ ROUTE_CHANGE) lines,
            see extract_routes.md
OUT_CSV     written with header src,dst,bytes,path; src and dst are htsim host numbers (= meshway
            GPU ranks, gpu-N), path the meshway switches between the two GPUs, space separated

htsim (3-tier FatTreeTopology, k = cube root of 4 x nodes, h = k/2) and meshway's fat-tree
number leaves and aggregation switches alike: ToR t is leaf-t, agg a is pod-(a // h)/spine-(a % h).
They wire the cores differently: htsim connects agg pod position p to cores p + h*l (l < h),
meshway connects pod-P/spine-j to cores j*h + c (c < h). The relabeling
    htsim core C  ->  meshway core-((C % h) * h + C // h)
is an isomorphism of the two fabrics (identity on GPUs, leaves and spines). Every hop is checked
against both wirings; any inconsistency aborts.
"""
import re
import sys


def read_cm(path):
    flows, nodes = [], None
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "Nodes":
                nodes = int(w[1])
            elif "->" in w[0]:
                s, d = (int(x) for x in w[0].split("->"))
                flows.append((s, d, int(w[w.index("size") + 1])))
    return nodes, flows


def fat_tree_k(nodes):
    k = 2
    while k ** 3 // 4 < nodes:
        k += 2
    if k ** 3 // 4 != nodes:
        sys.exit(f"{nodes} nodes is not a k^3/4 fat-tree")
    return k


KV = re.compile(r"(\w+)=(\S+)")


def read_routes(path):
    flows, hops = {}, {}
    with open(path) as f:
        for line in f:
            if line.startswith("ROUTE_CHANGE"):
                sys.exit(f"{path}: a flow changed its path mid-run: {line.strip()}")
            if not line.startswith(("ROUTE_FLOW", "ROUTE_HOP")):
                continue
            kv = dict(KV.findall(line))
            fid = int(kv["flow"])
            if line.startswith("ROUTE_FLOW"):
                flows[int(kv["idx"])] = (fid, int(kv["src"]), int(kv["dst"]), int(kv["size"]))
            else:
                # stderr is written in event order, so a flow's hops are in path order; the
                # stable sort on the first-arrival time only makes that explicit.
                hops.setdefault(fid, []).append((int(kv["t_ps"]), kv["tier"], int(kv["id"]), kv["next"]))
    for h in hops.values():
        h.sort(key=lambda x: x[0])
    return flows, hops


def check_htsim(src, dst, hops, h, where):
    """The hop list is a valid up-down path in htsim's wiring, and each printed next hop is the
    following switch (or the sink)."""
    tiers = [t for _, t, _, _ in hops]
    ids = [i for _, _, i, _ in hops]
    ok_shapes = (["TOR"], ["TOR", "AGG", "TOR"], ["TOR", "AGG", "CORE", "AGG", "TOR"])
    if tiers not in [list(s) for s in ok_shapes]:
        sys.exit(f"{where}: unexpected tier sequence {tiers}")
    if ids[0] != src // h or ids[-1] != dst // h:
        sys.exit(f"{where}: ToRs {ids[0]},{ids[-1]} do not serve hosts {src},{dst}")
    expect_shape = 0 if src // h == dst // h else 1 if src // (h * h) == dst // (h * h) else 2
    if len(tiers) != 2 * expect_shape + 1:
        sys.exit(f"{where}: {len(tiers)} switches for hosts {src}->{dst}; not a shortest path")
    for (_, t1, i1, nxt), (_, t2, i2, _) in zip(hops, hops[1:]):
        if {t1, t2} == {"TOR", "AGG"}:
            tor, agg = (i1, i2) if t1 == "TOR" else (i2, i1)
            linked = tor // h == agg // h
            want = f"LS{i1}->US{i2}(" if t1 == "TOR" else f"US{i1}->LS_{i2}("
        else:
            agg, core = (i1, i2) if t1 == "AGG" else (i2, i1)
            linked = agg % h == core % h
            want = f"US{i1}->CS{i2}(" if t1 == "AGG" else f"CS{i1}->US{i2}("
        if not linked or want not in nxt:
            sys.exit(f"{where}: hop {t1} {i1} -> {t2} {i2} is not an htsim link (next printed: {nxt})")
    if hops[-1][3] != "rocesink":
        sys.exit(f"{where}: last switch does not deliver to the sink (next printed: {hops[-1][3]})")


def to_meshway(tier, i, h):
    if tier == "TOR":
        return f"leaf-{i}"
    if tier == "AGG":
        return f"pod-{i // h}/spine-{i % h}"
    return f"core-{(i % h) * h + i // h}"


NAME = re.compile(r"^(?:leaf-(\d+)|pod-(\d+)/spine-(\d+)|core-(\d+))$")


def meshway_linked(a, b, h):
    """Adjacency in meshway's fat-tree (crates/meshway-fabric/src/build.rs, add_leaves and
    add_pods): gpu-g - leaf-(g // h); leaf-l - pod-(l // h)/spine-j for every j;
    pod-P/spine-j - core-(j*h + c) for c < h."""
    def parse(n):
        if isinstance(n, int):
            return ("gpu", n)
        m = NAME.match(n)
        if m.group(1) is not None:
            return ("leaf", int(m.group(1)))
        if m.group(2) is not None:
            return ("spine", int(m.group(2)), int(m.group(3)))
        return ("core", int(m.group(4)))
    x, y = sorted([parse(a), parse(b)], key=lambda t: ["gpu", "leaf", "spine", "core"].index(t[0]))
    if (x[0], y[0]) == ("gpu", "leaf"):
        return x[1] // h == y[1]
    if (x[0], y[0]) == ("leaf", "spine"):
        return x[1] // h == y[1]
    if (x[0], y[0]) == ("spine", "core"):
        return y[1] // h == x[2]
    return False


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    cm, err, out = sys.argv[1:]
    nodes, cm_flows = read_cm(cm)
    k = fat_tree_k(nodes)
    h = k // 2
    flows, hops = read_routes(err)
    if len(flows) != len(cm_flows):
        sys.exit(f"{err}: {len(flows)} ROUTE_FLOW lines, {len(cm_flows)} flows in {cm}")
    rows = []
    for idx, (s, d, size) in enumerate(cm_flows):
        fid, fs, fd, fsize = flows[idx]
        if (fs, fd, fsize) != (s, d, size):
            sys.exit(f"{err}: flow {idx} is {fs}->{fd} {fsize} B, the cm says {s}->{d} {size} B")
        where = f"{err}: flow {idx} ({s}->{d}, id {fid})"
        if fid not in hops:
            sys.exit(f"{where}: no ROUTE_HOP lines")
        check_htsim(s, d, hops[fid], h, where)
        path = [to_meshway(t, i, h) for _, t, i, _ in hops[fid]]
        for a, b in zip([s] + path, path + [d]):
            if not meshway_linked(a, b, h):
                sys.exit(f"{where}: {a} - {b} is not a meshway link")
        rows.append(f"{s},{d},{size},{' '.join(path)}")
    with open(out, "w") as f:
        f.write("src,dst,bytes,path\n")
        f.write("\n".join(rows) + "\n")
    print(f"{out}: {len(rows)} flows, k = {k}")


if __name__ == "__main__":
    main()
