#!/usr/bin/env bash
# Exports chain.toml's dependent flows for htsim and runs them in htsim's RoCE (built by
# build-htsim.sh). Prints how many of the exported flows htsim finished; exits 1 unless all.
# Usage: validation/htsim/run-chain.sh PATH/TO/htsim_roce [PATH/TO/meshway]
set -euo pipefail
htsim=${1:?usage: run-chain.sh PATH/TO/htsim_roce [meshway]}
meshway=${2:-target/release/meshway}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$meshway" simulate "$here/chain.toml" --htsim "$work/chain.cm" > /dev/null
flows=$(sed -n 's/^Connections //p' "$work/chain.cm")
(cd "$work" && "$htsim" -tm chain.cm -nodes 16 -end 100000 -linkspeed 100000 -q 100 -strat ecmp_host -paths 1 > out.txt 2>&1) || true
done=$(grep -c " finished at " "$work/out.txt" || true)
meshway_end=$("$meshway" simulate "$here/chain.toml" --json | grep -o '"end_ns": *[0-9]*' | tail -1 | grep -o '[0-9]*$')
last=$(grep " finished at " "$work/out.txt" | awk '{for (i = 1; i <= NF; i++) if ($i == "at") print $(i + 1)}' | sort -g | tail -1)
echo "htsim finished $done of $flows exported flows; the last at ${last:-?} us (meshway: $((meshway_end / 1000)) us, with the simple protocol's 14 us per step that htsim does not model)"
[ "$done" = "$flows" ]
