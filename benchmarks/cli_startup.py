"""Wall time of `llmctl --help` (target <= 150 ms), against a bare `python -c pass` on the same machine.

    .venv/bin/python benchmarks/cli_startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    runs = ap.parse_args().runs
    exe = Path(sys.executable).with_name("llmctl")
    wall([str(exe), "--help"], 3)  # warm the page cache
    base = wall([sys.executable, "-c", "pass"], runs)
    helps = wall([str(exe), "--help"], runs)
    ms = 1000
    print(f"python -c pass   median {statistics.median(base) * ms:6.1f} ms   max {max(base) * ms:6.1f} ms")
    print(f"llmctl --help    median {statistics.median(helps) * ms:6.1f} ms   max {max(helps) * ms:6.1f} ms"
          "   (target <= 150 ms)")


if __name__ == "__main__":
    main()
