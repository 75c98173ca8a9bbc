#!/usr/bin/env bash
# Runs meshway's packet level on the htsim reference cases (connection matrices written by
# gen_cm.py) and prints one CSV row per case: case, transport, flows, mean, p99, first and
# last FCT in us, events, user seconds.
# Usage: validation/htsim/packet/meshway-cases.sh CMDIR [path/to/meshway]
#   CMDIR: where gen_cm.py wrote the .cm files. CASES="perm-k4-1MB ..." to choose.
#   RoCE runs take htsim_roce's own per-flow paths from routes/CASE.csv where one exists
#   (see routes/extract_routes.md); ROUTES=0 lets meshway's ECMP choose instead.
set -euo pipefail
cmdir=$(realpath "${1:?usage: meshway-cases.sh CMDIR [meshway]}")
meshway=$(realpath "${2:-target/release/meshway}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cases=${CASES:-perm-k4-1MB perm-k8-1MB perm-k4-16MB perm-k8-16MB a2a-k4-256KB a2a-k8-256KB incast-k4-1MB incast-k8-1MB}
echo "case,transport,flows,mean_us,p99_us,first_us,last_us,events,user_s"
for c in $cases; do
    k=$(echo "$c" | sed -E 's/.*-k([0-9]+)-.*/\1/')
    # The connection matrix as a meshway flow list (ranks are htsim's host numbers).
    awk 'BEGIN{print "src,dst,bytes"} /->/ {split($1,a,"->"); print a[1]","a[2]","$5}' "$cmdir/$c.cm" > "$work/$c.csv"
    for t in ndp roce; do
        file=$c.csv
        if [ "$t" = ndp ]; then
            routing=spray; extra=$'window-packets = 15\ntrim-packets = 15'
        else
            routing=ecmp; extra=""
            if [ "${ROUTES:-1}" = 1 ] && [ -f "$here/routes/$c.csv" ]; then cp "$here/routes/$c.csv" "$work/$c-routes.csv"; file=$c-routes.csv; fi
        fi
        sed -e "s/@K@/$k/; s/@KIND@/$t/; s/@ROUTING@/$routing/; s/@FILE@/$file/" "$here/case.toml.in" > "$work/$c-$t.toml"
        printf '%s\n' "$extra" >> "$work/$c-$t.toml"
        /usr/bin/time -f "%U" -o "$work/time" "$meshway" simulate "$work/$c-$t.toml" --catalog "$here/htsim-packet.catalog.toml" \
            --fidelity packet --json --no-ideal > "$work/out.json"
        python3 - "$c" "$t" "$work/out.json" "$(cat "$work/time")" <<'PY'
import json, sys
case, t, path, user = sys.argv[1:5]
r = json.load(open(path))
p = r["packet"]; f = p["fct"][0][1]
print(f"{case},{t},{f['messages']},{f['mean_ns']/1e3:.1f},{f['p99_ns']/1e3:.1f},{f['first_ns']/1e3:.1f},{f['last_ns']/1e3:.1f},{p['stats']['events']},{user}")
PY
    done
done
