#!/usr/bin/env bash
# Runs the same flows in meshway and in htsim's RoCE (built by build-htsim.sh) and prints, per
# case and run, the flows and the mean, p99 and last flow completion time of each, with
# meshway's error relative to htsim. Cases: perm-k8.toml and perm-k16.toml (permutations of
# 2 MB flows on k = 8 and k = 16 fat-trees, 100 Gb/s, 1 us per link, 4000 B payloads), run with
# htsim-aligned.catalog.toml. Run r exports meshway's flows of --seed r (the permutation and
# its ECMP hashes) with --htsim and runs htsim on that file. k = 16 takes about 30 s per run
# in htsim on one core.
# Usage: validation/htsim/side-by-side.sh PATH/TO/htsim_roce [PATH/TO/meshway]
#   RUNS=N (default 3): runs per case, each another permutation and other ECMP draws.
#   CASES="perm-k8" (default "perm-k8 perm-k16"): scenario files of this directory to run.
set -euo pipefail
htsim=$(realpath "${1:?usage: side-by-side.sh PATH/TO/htsim_roce [meshway]}")
meshway=${2:-target/release/meshway}
runs=${RUNS:-3}
cases=${CASES:-perm-k8 perm-k16}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# htsim's RoceSrc reseeds the C library's generator from the wall clock (srand(time(NULL)) in
# sim/roce.cpp:65 at 841d9e7), and its ECMP path id and uplink orders come from it, so a run
# changes from one second to the next. This shim pins time() to the run number.
printf '%s\n' '#include <stdlib.h>' '#include <time.h>' \
    'time_t time(time_t *t) { time_t v = atol(getenv("HTSIM_CLOCK")); if (t) *t = v; return v; }' > "$work/clock.c"
cc -shared -fPIC -o "$work/clock.so" "$work/clock.c"

results=()
for name in $cases; do
    for run in $(seq 1 "$runs"); do
        out="$work/$name.$run"
        TIMEFORMAT="$name run $run: meshway %R s"
        time "$meshway" simulate "$here/$name.toml" --catalog "$here/htsim-aligned.catalog.toml" --seed "$run" \
            --json --flows --no-ideal --htsim "$out.cm" > "$out.json"
        nodes=$(sed -n 's/^Nodes //p' "$out.cm")  # htsim builds the 3-tier fat-tree with k^3/4 = nodes
        TIMEFORMAT="$name run $run: htsim %R s"
        # -linkspeed 100000: Mb/s, every link (the scenario's nic).
        # -hop_latency 1 / -switch_latency 0: us per link and per switch (the scenario's latencies).
        # -mtu 4000: payload bytes per packet (the scenario's mtu).
        # -q 1000: packets per output queue. With htsim's default lossless_input queues PFC acts per
        #   input port (pause above 15 packets, resume below 12: main_roce.cpp:69, the defaults kept)
        #   and the output size only gates a "LOSSLESS not working" warning; 1000 is above k = 16
        #   input ports x (15 + about 8 packets in flight while a pause takes effect).
        # -strat ecmp_host -paths 1: per-switch ECMP hash of the flow, one path id per flow.
        # -end 20000: us, far beyond the last completion (about 1.2 ms); fct.py reports stragglers.
        time (cd "$work" && LD_PRELOAD="$work/clock.so" HTSIM_CLOCK=$run "$htsim" -tm "$out.cm" -nodes "$nodes" \
            -linkspeed 100000 -hop_latency 1 -switch_latency 0 -mtu 4000 -q 1000 \
            -strat ecmp_host -paths 1 -end 20000 > "$out.htsim")
        results+=("$out.json")
    done
done
python3 "$here/fct.py" "${results[@]}"
