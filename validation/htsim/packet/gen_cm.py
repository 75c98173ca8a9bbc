#!/usr/bin/env python3
"""Write htsim connection-matrix files for the reference cases.

Usage: gen_cm.py OUTDIR [BIGDIR]   (BIGDIR, default OUTDIR: where a2a-k8-256KB.cm, 443 KB, goes)
Sizes are decimal (1 MB = 1,000,000 B; 256 KB = 256,000 B), as meshway's units parse them.
Every flow starts at 0 (the cm 'start' field is in picoseconds in this htsim version).
Permutation: a random derangement (no host sends to itself), random.Random(SEED).
"""
import os
import random
import sys

SEED = 42


def derangement(n, rng):
    while True:
        p = list(range(n))
        rng.shuffle(p)
        if all(i != p[i] for i in range(n)):
            return p


def write(path, n, flows):
    with open(path, "w") as f:
        f.write(f"Nodes {n}\nConnections {len(flows)}\n")
        for s, d, size in flows:
            f.write(f"{s}->{d} start 0 size {size}\n")


def main():
    out = sys.argv[1]
    big = sys.argv[2] if len(sys.argv) > 2 else out
    os.makedirs(out, exist_ok=True)
    os.makedirs(big, exist_ok=True)
    for k in (4, 8):
        n = k ** 3 // 4
        rng = random.Random(SEED + k)
        perm = derangement(n, rng)
        for label, size in (("1MB", 1_000_000), ("16MB", 16_000_000)):
            write(f"{out}/perm-k{k}-{label}.cm", n, [(s, perm[s], size) for s in range(n)])
        write(f"{out if k == 4 else big}/a2a-k{k}-256KB.cm", n,
              [(s, d, 256_000) for s in range(n) for d in range(n) if s != d])
        write(f"{out}/incast-k{k}-1MB.cm", n, [(s, 0, 1_000_000) for s in range(1, n)])


main()
