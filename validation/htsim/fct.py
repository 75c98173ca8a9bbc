#!/usr/bin/env python3
"""Flow completion times of meshway and htsim side by side, for side-by-side.sh.

Usage: fct.py DIR/CASE.RUN.json ...
Each CASE.RUN.json is `meshway simulate --json --flows` output; next to it CASE.RUN.htsim is
htsim_roce's standard output for the same flows (exported with --htsim). FCTs in us:
meshway end_ns - start_ns; htsim "finished at" (the last ACK back at the sender) minus
"startflow ... at" of the same flow, Roce_SRC_DST. Prints one row per run and the mean of
the runs per case; error = (meshway - htsim) / htsim. Exits 1 if htsim left flows unfinished.
"""
import json
import math
import re
import sys
from collections import defaultdict

START = re.compile(r"startflow Roce_(\d+)_(\d+) at (\S+)")
DONE = re.compile(r"Flow Roce_(\d+)_(\d+) \d+ finished at (\S+)")


def meshway(path):
    flows = json.load(open(path))["flows"]
    fct = {(int(f["src"].split("-")[-1]), int(f["dst"].split("-")[-1])): (f["end_ns"] - f["start_ns"]) / 1e3
           for f in flows if f["end_ns"] is not None}
    assert len(fct) == len(flows), f"{path}: unfinished or repeated (src, dst) pairs"
    return fct


def htsim(path):
    start, fct, lossless_warnings = {}, {}, 0
    for line in open(path):
        if m := START.match(line):
            start[int(m[1]), int(m[2])] = float(m[3])
        elif m := DONE.match(line):
            key = (int(m[1]), int(m[2]))
            fct[key] = float(m[3]) - start[key]
        lossless_warnings += "LOSSLESS not working" in line
    return fct, lossless_warnings


def stats(values):
    v = sorted(values)
    # p99 by nearest rank: the smallest FCT that at least 99% of the flows do not exceed.
    return [sum(v) / len(v), v[math.ceil(0.99 * len(v)) - 1], v[-1]]


def row(name, run, flows, mw, hs):
    err = [100 * (a - b) / b for a, b in zip(mw, hs)]
    cells = " ".join(f"{x:9.1f}" for x in mw + hs) + " " + " ".join(f"{e:+7.1f}%" for e in err)
    print(f"{name:<10} {run:>4} {flows:>6} {cells}")


def main():
    runs, ok = defaultdict(list), True
    for path in sys.argv[1:]:
        name, run = path.rsplit("/", 1)[-1].rsplit(".", 2)[:2]
        mw = meshway(path)
        hs, warnings = htsim(path[: -len(".json")] + ".htsim")
        if set(hs) != set(mw):
            print(f"{name} run {run}: htsim finished {len(hs)} of {len(mw)} flows", file=sys.stderr)
            ok = False
            continue
        if warnings:
            print(f"{name} run {run}: htsim printed {warnings} 'LOSSLESS not working' warnings", file=sys.stderr)
        runs[name].append((run, len(mw), stats(mw.values()), stats(hs.values())))
    print(f"{'FCT (us)':<22} {'---------- meshway ----------':>29} {'----------- htsim -----------':>29}"
          f" {'---- meshway vs htsim -----':>26}")
    print(f"{'case':<10} {'run':>4} {'flows':>6}" + " {:>9} {:>9} {:>9}".format("mean", "p99", "last") * 2
          + " {:>8} {:>8} {:>8}".format("mean", "p99", "last"))
    for name, rs in runs.items():
        for run, flows, mw, hs in rs:
            row(name, run, flows, mw, hs)
        if len(rs) > 1:
            mean = lambda i: [sum(r[i][j] for r in rs) / len(rs) for j in range(3)]
            row(name, "mean", rs[0][1], mean(2), mean(3))
    sys.exit(0 if ok else 1)


main()
