"""Prints numbered, time-stamped lines at a fixed rate, forever: the TUI logs benchmark's app.

Usage: spam.py RATE. Each line is "seq 0000042 t=1712345678.1234 xxx…": `t` is the wall-clock
time it was written, so a reader of the screen can tell how far behind the newest shown line is.
Lines go out in small batches every millisecond (RATE/1000 per batch, at least one).
"""
import sys
import time

rate = int(sys.argv[1])
tick = 0.001
batch = max(1, int(rate * tick))
pad = "x" * 24
out = sys.stdout
start = time.perf_counter()
i = 0
while True:
    due = start + i / rate
    now = time.perf_counter()
    if now < due:
        time.sleep(due - now)
    stamp = time.time()
    for j in range(i, i + batch):
        out.write(f"seq {j:07d} t={stamp:.4f} {pad}\n")
    out.flush()
    i += batch
