"""Benchmark the CLI's start: `rlsctl --version` and `rlsctl --help` against `python -c pass`, same run.

    python benchmarks/cli_start_bench.py [--runs N]

Each command runs N times (default 30) as a fresh process, the three kinds
interleaved so that a busy moment of the machine hits all of them alike; the
figure is the median wall time. Target: each rlsctl command within 0.15 s
of the bare interpreter's start (the CLI loads a command's modules only when
that command runs). Prints the medians, the differences and the ratios;
exits 1 when the target is missed, so it can guard CI if wanted. The
interpreter is this one, and `rlsctl` is run as `python -m rlsctl.cli.main`
(the console script does the same import).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

TARGET_SECONDS = 0.15

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "rlsctl --version": [sys.executable, "-m", "rlsctl.cli.main", "--version"],
    "rlsctl --help": [sys.executable, "-m", "rlsctl.cli.main", "--help"],
}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    for command in COMMANDS.values():
        timed(command)  # warm the file cache and the bytecode
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            times[name].append(timed(command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline = medians["python -c pass"]
    print(f"{'command':<18} {'median':>9} {'vs python':>10} {'ratio':>6}  ({args.runs} runs each)")
    missed = False
    for name, median in medians.items():
        extra = median - baseline
        print(f"{name:<18} {median * 1000:7.1f}ms {extra * 1000:+8.1f}ms {median / baseline:5.2f}x")
        missed |= name != "python -c pass" and extra > TARGET_SECONDS
    print(f"target: each rlsctl command within {TARGET_SECONDS * 1000:.0f} ms of python -c pass: "
          f"{'missed' if missed else 'met'}")  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
