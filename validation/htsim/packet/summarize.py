#!/usr/bin/env python3
"""Summarize htsim runs. Per-flow FCT = 'finished at' (printed by the source when an ACK whose
cumulative ack covers the flow size arrives) minus 'startflow ... at' of the same flow name.
Usage: summarize.py PREFIX...   (reads PREFIX.out = htsim stdout, PREFIX.time = /usr/bin/time -v,
optional PREFIX.events = 'events N' from the event-counting build). Prints markdown rows."""
import math
import os
import re
import sys

START = re.compile(r"startflow (\S+) .*at (\S+)$")
DONE = re.compile(r"Flow (\S+) (?:flow_id )?\d+ finished at (\S+)")


def parse(prefix):
    start, fct, notes = {}, {}, []
    lossless = rtx = 0
    for line in open(prefix + ".out"):
        line = line.rstrip("\n").lstrip(".|")  # the Clock prints . or | without newline
        if m := START.match(line):
            start[m[1]] = float(m[2])
        elif m := DONE.match(line):
            fct[m[1]] = float(m[2]) - start[m[1]]
        elif "LOSSLESS not working" in line:
            lossless += 1
        elif line.startswith("New:"):
            notes.append(line.strip())
    if lossless:
        notes.append(f"{lossless} LOSSLESS warnings")
    t = open(prefix + ".time").read()
    if m := re.search(r"terminated by signal (\d+)", t):
        notes.append(f"CRASHED (signal {m[1]})")
    user = float(re.search(r"User time \(seconds\): (\S+)", t)[1])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t)[1])
    events = "-"
    if os.path.exists(prefix + ".events"):
        if m := re.search(r"events (\d+)", open(prefix + ".events").read()):
            events = f"{int(m[1])/1e6:.2f}M"
    return start, fct, notes, user, rss, events


print("| run | flows | finished | mean | p99 | first | last | events | user s | peak RSS MB | notes |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for p in sys.argv[1:]:
    start, fct, notes, user, rss, events = parse(p)
    v = sorted(fct.values())
    name = p.rsplit("/", 1)[-1]
    if v:
        p99 = v[math.ceil(0.99 * len(v)) - 1]
        stats = f"{sum(v)/len(v):.1f} | {p99:.1f} | {v[0]:.1f} | {v[-1]:.1f}"
    else:
        stats = "- | - | - | -"
    print(f"| {name} | {len(start)} | {len(v)} | {stats} | {events} | {user:.2f} | {rss/1024:.0f} | {'; '.join(notes)} |")
