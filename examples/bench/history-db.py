#!/usr/bin/env python3
"""A meshway agent database with one udp target and N raw samples, one a second, ending now
(RTT 100-150 us, every 1,000th lost): the input of BENCHMARKS.md's history benchmark.

    python3 examples/bench/history-db.py /tmp/big.db 2500000
"""
import random
import sqlite3
import sys
import time

path, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(path)
c.executescript("""
CREATE TABLE targets(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, address TEXT NOT NULL);
CREATE TABLE samples(target_id INTEGER NOT NULL, ts_ns INTEGER NOT NULL, rtt_ns INTEGER, value REAL);
CREATE INDEX samples_by_target_time ON samples(target_id, ts_ns);
CREATE TABLE rollup_1m(target_id INTEGER NOT NULL, start_ns INTEGER NOT NULL, sent INTEGER, lost INTEGER,
  min_ns INTEGER, mean_ns REAL, max_ns INTEGER, p50_ns INTEGER, p90_ns INTEGER, p99_ns INTEGER, jitter_ns REAL,
  value_min REAL, value_mean REAL, PRIMARY KEY(target_id, start_ns));
CREATE TABLE rollup_1h(target_id INTEGER NOT NULL, start_ns INTEGER NOT NULL, sent INTEGER, lost INTEGER,
  min_ns INTEGER, mean_ns REAL, max_ns INTEGER, p50_ns INTEGER, p90_ns INTEGER, p99_ns INTEGER, jitter_ns REAL,
  value_min REAL, value_mean REAL, PRIMARY KEY(target_id, start_ns));
""")
c.execute("INSERT INTO targets VALUES (1, 'a', 'udp', '127.0.0.1:8622')")
start = int(time.time()) * 10**9 - n * 10**9
random.seed(1)
c.executemany(
    "INSERT INTO samples VALUES (1, ?, ?, NULL)",
    ((start + k * 10**9, None if k % 1000 == 0 else 100_000 + random.randrange(50_000)) for k in range(n)),
)
c.commit()
