"""How long the ``labvault`` command takes to start: ``labvault --help`` in a fresh process,
against a bare ``python -c pass`` and against importing the web application (what every
command loaded before the web framework was imported only by the commands that serve).

    python bench/cli_start.py [--runs 15]

Each figure is the median wall time of `--runs` fresh processes, run in turn (one of each
per round, in rotating order), so that a busy moment of the machine falls on all three.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _common import machine

COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "labvault --help": [sys.executable, "-c", "from labvault.cli import app; app()", "--help"],
    "labvault --help + the web app": [
        sys.executable, "-c", "import labvault.api.app; from labvault.cli import app; app()",
        "--help"],
}


def run_once(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    names = list(COMMANDS)
    times: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # warm the file cache once
        run_once(COMMANDS[name])
    for i in range(args.runs):
        for name in names[i % 3:] + names[:i % 3]:
            times[name].append(run_once(COMMANDS[name]))
    print(machine())
    base = statistics.median(times[names[0]])
    for name in names:
        m = statistics.median(times[name])
        print(f"{name:32} median {m * 1000:7.0f} ms  (x{m / base:5.1f} the bare interpreter)")
    cli, web = (statistics.median(times[n]) for n in names[1:])
    print(f"starting without the web framework: {cli / web:.2f}x the time with it")


if __name__ == "__main__":
    main()
