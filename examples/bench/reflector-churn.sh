#!/bin/bash
# A reflector under a churn of source addresses, against a new sender that arrives during it.
#
# SOURCES distinct (address, port) sources (400 loopback addresses 127.77.x.y, each packet from
# a fresh socket, so a fresh ephemeral port) send one valid STAMP packet each at RATE packets
# per second; meanwhile `meshway ping` sends 2,000 probes at 5 ms from 127.0.0.1. Everything
# goes to 127.0.0.1 only; the churn stops after SOURCES packets or 60 s, the ping after 10 s.
#
#   bash examples/bench/reflector-churn.sh [SOURCES=100000] [RATE=20000] [MAX_SOURCES=65536]
#
# RATE_LIMIT (default 10000, the reflector's default) is passed as --rate-limit.
# Prints the churn's achieved rate, the reflector's counters and the new sender's loss.
set -euo pipefail
SOURCES=${1:-100000}
RATE=${2:-20000}
MAX=${3:-65536}
MESHWAY=${MESHWAY:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/meshway}
PORT=${PORT:-8641}
DIR=$(mktemp -d /tmp/mwchurn.XXXXXX)
cleanup() {
    jobs -p | xargs -r kill 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

"$MESHWAY" reflect --listen 127.0.0.1:$PORT --max-sources "$MAX" --rate-limit "${RATE_LIMIT:-10000}" --duration 70s --json \
    >"$DIR/reflect.json" 2>"$DIR/reflect.log" &
REFLECT=$!
sleep 1
python3 - "$SOURCES" "$RATE" "$PORT" >"$DIR/churn.log" <<'PY' &
import socket, struct, sys, time
n, rate, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
# seq, timestamp, error estimate (multiplier 1), padding to 44 bytes: a valid sender packet.
pkt = struct.pack("!IQH", 0, 0, 1) + bytes(30)
t0 = time.monotonic()
sent = 0
for i in range(n):
    due = t0 + i / rate
    now = time.monotonic()
    if now - t0 > 60:
        break
    if due > now:
        time.sleep(due - now)
    a = 1 + i % 400
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((f"127.77.{a // 250}.{a % 250 + 1}", 0))
    s.sendto(struct.pack("!I", i) + pkt[4:], ("127.0.0.1", port))
    s.close()
    sent += 1
el = time.monotonic() - t0
print(f"churn: {sent} packets from {sent} sources in {el:.1f} s ({sent / el:.0f} pps)")
PY
CHURN=$!
sleep 0.5
"$MESHWAY" ping 127.0.0.1:$PORT -c 2000 -i 5ms --json >"$DIR/ping.json" 2>/dev/null || true
wait $CHURN || true
kill -INT $REFLECT 2>/dev/null || true
wait $REFLECT || true
cat "$DIR/churn.log"
python3 - "$DIR/ping.json" "$DIR/reflect.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["report"]
r = json.load(open(sys.argv[2]))
print(f"new sender: sent {p['sent']}, received {p['received']}, lost {p['sent'] - p['received']} "
      f"({(p['sent'] - p['received']) / max(p['sent'], 1):.2%})")
print("reflector: " + ", ".join(f"{k} {v}" for k, v in r.items() if isinstance(v, (int, float))))
PY
