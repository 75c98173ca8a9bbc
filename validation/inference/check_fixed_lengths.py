#!/usr/bin/env python3
"""Are the TensorRT-LLM 0.14 online rows consistent with fixed prompt and output lengths?

For a rate row, 500 requests arrive over about 500/rate seconds; with fixed lengths the
last one finishes within one request's latency after that, and the mean latency
(TTFT + (output - 1) x ITL, the row's own means) overstates the last request's latency
when the server drains at the end. So the achieved request rate should be at least

    floor = 500 / (500 / rate + mean TTFT + (output - 1) x mean ITL)

up to the Poisson spread of the arrival span (about 4.5% for 500 arrivals). The rows with
467-token prompts meet the floor; the 202/214 rows fall below it, further the higher the
rate, as they would if their lengths vary around those means (a dataset with a long tail
of outputs, which the page does not name). meshway runs fixed lengths, so its throughput
for those rows is high. Usage: python3 validation/inference/check_fixed_lengths.py
"""
import csv
import os

path = os.path.join(os.path.dirname(__file__), "latency-load.csv")
print(f"{'line':>4} {'model':<14} {'gpu':<15} {'in/out':>8} {'rate':>5} {'floor req/s':>11} {'published':>9} {'vs floor':>8}")
for line, r in enumerate(csv.DictReader(open(path, newline="")), start=2):
    if r["engine_version"] != "0.14.0" or r["load"] == "INF":
        continue
    rate = float(r["load"])
    osl = int(r["output_tokens"])
    latency_s = (float(r["ttft_ms"]) + (osl - 1) * float(r["itl_ms"])) / 1000
    floor = 500 / (500 / rate + latency_s)
    published = float(r["throughput"]) / osl  # output tokens/s over output tokens per request
    print(f"{line:>4} {r['model']:<14} {r['gpu']:<15} {r['input_tokens'] + '/' + r['output_tokens']:>8} {rate:>5.0f} "
          f"{floor:>11.2f} {published:>9.2f} {100 * (published / floor - 1):>+7.1f}%")
