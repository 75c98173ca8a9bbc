#!/bin/bash
# 128 veth pairs (256 interfaces) in one namespace; the agent polls all at 1 s.
set -e
NS=mwifbench
ip netns del $NS 2>/dev/null || true
ip netns add $NS
for i in $(seq 0 127); do ip -n $NS link add v${i}a type veth peer name v${i}b; ip -n $NS link set v${i}a up; ip -n $NS link set v${i}b up; done
ip -n $NS link set lo up
cat > /tmp/ifbench/agent.toml <<'T'
[agent]
listen = "127.0.0.1:9345"
database = "/tmp/ifbench/bench.db"
evaluate-every = "10s"
[[target]]
name = "all"
kind = "interface"
address = "v*"
interval = "1s"
speed = "100Gbps"
objectives = { window = "5min", utilization = "80%", error-ratio = "0.1%", drop-ratio = "0.1%" }
T
rm -f /tmp/ifbench/bench.db*
ip netns exec $NS /work/main/target/release/meshway agent --config /tmp/ifbench/agent.toml 2>/tmp/ifbench/agent.log &
sleep 120
PID=$(pgrep -f "agent --config /tmp/ifbench/agent.toml" | head -1)
t0=$(awk '{print $14+$15}' /proc/$PID/stat); sleep 60; t1=$(awk '{print $14+$15}' /proc/$PID/stat)
echo "cpu_percent $(( (t1-t0) * 100 / (60 * $(getconf CLK_TCK)) ))  ticks $((t1-t0))"
grep -E "VmRSS|VmHWM" /proc/$PID/status
ip netns exec $NS python3 -c "
import urllib.request;b=urllib.request.urlopen('http://127.0.0.1:9345/metrics').read().decode()
print('series', sum(1 for l in b.splitlines() if l.startswith('meshway_interface_receive_bytes_total')))"
kill -TERM $PID; sleep 2
sqlite3 /tmp/ifbench/bench.db "select count(*) from samples" 2>/dev/null || python3 -c "import sqlite3;print('samples',sqlite3.connect('/tmp/ifbench/bench.db').execute('select count(*) from samples').fetchone())"
ip netns del $NS
