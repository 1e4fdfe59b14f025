"""Prints numbered lines at a fixed rate, then reports the rate it achieved.

Usage: spam.py LINES RATE [exit]. Writes LINES lines ("seq 0000042 xxx…") paced at RATE lines/s
(one flush of RATE/1000 lines per millisecond), then one line "SPAM-DONE lines=N seconds=S
rate=R" on stderr. A writer that blocks (a full pipe, a slow log path) falls behind schedule,
which shows as a lower achieved rate. Without "exit" it then sleeps, so a dyno is not restarted.
"""
import sys
import time

lines, rate = int(sys.argv[1]), int(sys.argv[2])
tick = 0.001
batch = max(1, int(rate * tick))
pad = "x" * 40
out = sys.stdout
start = time.perf_counter()
i = 0
while i < lines:
    due = start + i / rate
    now = time.perf_counter()
    if now < due:
        time.sleep(due - now)
    end = min(lines, i + batch)
    for j in range(i, end):
        out.write(f"seq {j:07d} {pad}\n")
    out.flush()
    i = end
elapsed = time.perf_counter() - start
sys.stderr.write(f"SPAM-DONE lines={lines} seconds={elapsed:.4f} rate={lines / elapsed:.0f}\n")
sys.stderr.flush()
if sys.argv[3:] != ["exit"]:
    while True:
        time.sleep(3600)
