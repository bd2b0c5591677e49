"""How long the CLI takes to answer a usage error: every one should be under 0.5 s on a quiet dev machine.

    python benchmarks/bench_cli_start.py [--repeat 7]

Each command runs as a user runs it (a fresh `python -m edgevision` process), `--repeat` times; the median and
the best wall time are printed, with --help for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from edgevision.hardware import cpu_info, cpu_line

COMMANDS = [
    ["--help"],
    ["export", "yolo99"],
    ["export", "fast-yolo-demo", "--target", "tpu"],
    ["export", "fast-yolo-demo", "--precision", "int4"],
    ["export", "fast-yolo-demo", "--imgsz", "100"],
    ["check", "/nonexistent/bundle"],
    ["bench", "/nonexistent/bundle"],
    ["run", "/nonexistent/bundle", "--source", "clip.mp4"],
    ["export", "--no-such-option"],
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    print(f"CPU: {cpu_line(cpu_info().to_json())}\n")
    print("| command | exit | median s | best s | under 0.5 s |\n|---|---|---|---|---|")
    for argv in COMMANDS:
        times, code = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            code = subprocess.run([sys.executable, "-m", "edgevision", *argv], capture_output=True).returncode
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"| `edgevision {' '.join(argv)}` | {code} | {med:.3f} | {min(times):.3f} | "
              f"{'yes' if med < 0.5 else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
