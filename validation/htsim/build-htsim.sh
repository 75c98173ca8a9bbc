#!/usr/bin/env bash
# Builds htsim's RoCE binary from a checkout of Broadcom/csg-htsim that lives OUTSIDE this
# repository (htsim never enters it). Usage:
#   validation/htsim/build-htsim.sh /path/to/csg-htsim            # prints the binary's path
# A snapshot can come from `git clone https://github.com/Broadcom/csg-htsim` (the runs in
# docs/simulation.md used commit 841d9e7). Needs g++ and make.
set -euo pipefail
src=${1:?usage: build-htsim.sh CSG_HTSIM_CHECKOUT}
[ -f "$src/sim/Makefile" ] || { echo "build-htsim.sh: $src/sim/Makefile not found: expected a csg-htsim checkout" >&2; exit 2; }
jobs=$(nproc 2>/dev/null || echo 2)
make -s -C "$src/sim" -j"$jobs" libhtsim.a >&2
make -s -C "$src/sim/datacenter" -j"$jobs" htsim_roce >&2
echo "$src/sim/datacenter/htsim_roce"
