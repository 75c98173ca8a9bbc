#!/usr/bin/env bash
# Usage: run_case.sh ndp|roce CMFILE NODES END_US OUTPREFIX
# Runs one htsim case at 100 Gb/s, 1 us per link, switch latency 0, 4000 B payloads.
# stdout of htsim -> OUTPREFIX.out, /usr/bin/time -v -> OUTPREFIX.time, command -> OUTPREFIX.cmd
# EXTRA="..." appends flags (e.g. EXTRA="-cwnd 50" for NDP, "-host_queue_type prio" for RoCE).
set -euo pipefail
bin=/tmp/htsim/src/sim/datacenter
work=/tmp/htsim/work
proto=$1 cm=$(realpath "$2") nodes=$3 end=$4 out=$(realpath -m "$5")
common=(-tm "$cm" -nodes "$nodes" -linkspeed 100000 -hop_latency 1 -switch_latency 0 -mtu 4000 -end "$end" ${EXTRA:-})
tmpd=$(mktemp -d)   # htsim writes logout.dat (and .paths) into the cwd
cd "$tmpd"
case $proto in
  ndp)
    # NDP defaults kept: -q 15 (composite queue, packets), -cwnd 15 (packets), composite queues.
    # -strat perm: per-packet source-routed spraying over a permutation of all paths (the strategy
    # used by csg-htsim's own NDP examples; htsim_ndp has no default and aborts without -strat).
    echo "$bin/htsim_ndp ${common[*]} -strat perm" > "$out.cmd"
    /usr/bin/time -v -o "$out.time" "$bin/htsim_ndp" "${common[@]}" -strat perm > "$out.out"
    ;;
  roce)
    # flags of validation/htsim/side-by-side.sh; clock shim pins srand(time(NULL)) in RoceSrc.
    echo "LD_PRELOAD=$work/clock.so HTSIM_CLOCK=1 $bin/htsim_roce ${common[*]} -q 1000 -strat ecmp_host -paths 1" > "$out.cmd"
    LD_PRELOAD=$work/clock.so HTSIM_CLOCK=1 /usr/bin/time -v -o "$out.time" "$bin/htsim_roce" "${common[@]}" \
        -q 1000 -strat ecmp_host -paths 1 > "$out.out"
    ;;
esac
cd / && rm -rf "$tmpd"
