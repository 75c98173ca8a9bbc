#!/usr/bin/env python3
"""Are the TensorRT-LLM 0.14 online rows consistent with fixed prompt and output lengths?

Rate rows: 500 requests arrive over about 500/rate seconds; with fixed lengths the last
one finishes within one request's latency after that, and the mean latency (TTFT +
(output - 1) x ITL, the row's own means) overstates the last request's latency when the
server drains at the end. So the achieved request rate should be at least

    floor = 500 / (500 / rate + mean TTFT + (output - 1) x mean ITL)

up to the Poisson spread of the arrival span (one standard deviation is about 4.5% for 500
arrivals). INF rows (all 500 at once): the last request waits for the prompts ahead of it,
about twice the mean TTFT if the waits grow evenly (an assumption), then decodes, so

    floor = 500 / (2 x mean TTFT + (output - 1) x mean ITL)

The 467-token rows reach the floor, except two single rows at 2 and 4 req/s (file lines 8
and 21: -12% and -8%); the 202/214 rows fall below it further the higher the load (5-20%
at 8-16 req/s, 16-31% at 32, 33-40% at INF), as they would if their lengths vary around
those means (a dataset, e.g. with a long tail of outputs; the page does not name one).
meshway runs fixed lengths, so its throughput for those rows is high.
Usage: python3 validation/inference/check_fixed_lengths.py
"""
import csv
import os

path = os.path.join(os.path.dirname(__file__), "latency-load.csv")
print(f"{'file line':>9} {'model':<14} {'gpu':<15} {'in/out':>8} {'load':>5} {'floor req/s':>11} {'published':>9} {'vs floor':>8}")
with open(path, newline="") as f:
    for line, r in enumerate(csv.DictReader(f), start=2):
        if r["engine_version"] != "0.14.0":
            continue
        osl = int(r["output_tokens"])
        ttft_s, itl_s = float(r["ttft_ms"]) / 1000, float(r["itl_ms"]) / 1000
        if r["load"] == "INF":
            floor = 500 / (2 * ttft_s + (osl - 1) * itl_s)
        else:
            floor = 500 / (500 / float(r["load"]) + ttft_s + (osl - 1) * itl_s)
        published = float(r["throughput"]) / osl  # output tokens/s over output tokens per request
        print(f"{line:>9} {r['model']:<14} {r['gpu']:<15} {r['input_tokens'] + '/' + r['output_tokens']:>8} {r['load']:>5} "
              f"{floor:>11.2f} {published:>9.2f} {100 * (published / floor - 1):>+7.1f}%")
