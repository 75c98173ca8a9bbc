#!/bin/bash
# The agent probing N udp targets at 1 s with both cores kept busy by a CPU hog, against a
# concurrent `meshway ping` of the same reflector. Everything runs in a network namespace this
# script creates (only its loopback is up), so the reflector may listen on 0.0.0.0 and the
# targets can be N distinct loopback addresses (127.0.x.y). Bounded: the hog and the ping stop
# after DURATION seconds; the namespace is removed on exit.
#
#   bash examples/bench/agent-udp-targets.sh [N=1000] [DURATION=300] [HOG=2]
#
# PING_INTERVAL (default 1s) sets the concurrent ping's interval.
# Prints: alerts firing, the agent's RTT p50 (median over targets) against the ping's p50,
# the agent's CPU (share of one core) and resident memory at each minute.
set -euo pipefail
N=${1:-1000}
DURATION=${2:-300}
HOG=${3:-2}
PING_INTERVAL=${PING_INTERVAL:-1s}
MESHWAY=${MESHWAY:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/meshway}
NS=mwudpbench
DIR=$(mktemp -d /tmp/mwudpbench.XXXXXX)
cleanup() {
    jobs -p | xargs -r kill 2>/dev/null || true
    ip netns pids $NS 2>/dev/null | xargs -r kill 2>/dev/null || true
    sleep 1
    ip netns del $NS 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
ip netns del $NS 2>/dev/null || true
ip netns add $NS
ip -n $NS link set lo up
in_ns() { ip netns exec $NS "$@"; }

in_ns "$MESHWAY" reflect --listen 0.0.0.0:8620 --duration "${DURATION}s" >"$DIR/reflect.log" 2>&1 &
{
    echo '[agent]'
    echo 'listen = "127.0.0.1:9350"'
    echo "database = \"$DIR/bench.db\""
    echo 'evaluate-every = "5s"'
    for i in $(seq 0 $((N - 1))); do
        echo '[[target]]'
        echo "name = \"t$i\""
        echo 'kind = "udp"'
        echo "address = \"127.$(((i / 250) / 250)).$(((i / 250) % 250)).$((i % 250 + 1)):8620\""
        echo 'interval = "1s"'
        echo 'objectives = { window = "1min", rtt-p99 = "10ms", loss = "1%" }'
    done
} >"$DIR/agent.toml"
in_ns "$MESHWAY" agent --config "$DIR/agent.toml" 2>"$DIR/agent.log" &
sleep 2
PID=$(pgrep -f "agent --config $DIR/agent.toml" | head -1)
for _ in $(seq 1 "$HOG"); do timeout "$DURATION" sh -c 'while :; do :; done' & done
in_ns timeout -s INT $((DURATION - 5)) "$MESHWAY" ping 127.0.0.1:8620 -c 0 -i "$PING_INTERVAL" --json >"$DIR/ping.json" 2>/dev/null &
PING=$!
TICK=$(getconf CLK_TCK)
for m in $(seq 60 60 "$DURATION"); do
    t0=$(awk '{print $14+$15}' /proc/$PID/stat)
    sleep 60
    t1=$(awk '{print $14+$15}' /proc/$PID/stat)
    echo "minute $((m / 60)): agent cpu $(((t1 - t0) * 100 / (60 * TICK)))% of one core, rss $(awk '/VmRSS/ {print $2 " " $3}' /proc/$PID/status)"
done
wait $PING || true
in_ns python3 - "$DIR/ping.json" "$DIR/agent.log" <<'PY'
import json, sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:9350/metrics").read().decode()
firing, p50 = 0, []
for l in body.splitlines():
    if l.startswith("meshway_alert_firing{") and l.endswith(" 1"):
        firing += 1
    if l.startswith("meshway_window_rtt_seconds{") and 'percentile="50"' in l:
        p50.append(float(l.rsplit(" ", 1)[1]))
p50.sort()
ping = json.load(open(sys.argv[1]))
pp50 = ping["report"]["rtt"]["p50_ns"] / 1e9
agent = p50[len(p50) // 2] if p50 else float("nan")
fired = [l for l in open(sys.argv[2]) if "alert firing" in l]
print(f"targets {len(p50)}, alerts firing at the end {firing}, fired during the run {len(fired)}")
for l in fired[:5]:
    print("  " + l.strip())
print(f"rtt p50: agent (median over targets) {agent*1e6:.1f} us, meshway ping {pp50*1e6:.1f} us, ratio {agent/pp50:.2f}")
PY
