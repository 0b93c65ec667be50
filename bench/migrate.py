"""Migration throughput: HL7 v2 exports of N patients (≈ 10 results each) parsed only, then
planned, staged and imported through the vault (SQLite), then verified — in one run.

Prints results/s of parse only (the baseline) and of stage + parse + store, their ratio, the
verification time, and the peak memory (max RSS) of each phase, each measured in a process of
its own so that generating the files does not count.

    python bench/migrate.py [--patients 100000] [--files 4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _common import machine


def generate(out_dir: Path, patients: int, files: int, seed: int) -> list[Path]:
    from labvault import ingest
    from labvault.synthetic import SyntheticLab

    lab = SyntheticLab(seed)
    write = ingest.writer_for("hl7v2")
    paths = []
    per_file = -(-patients // files)
    for i in range(files):
        n = min(per_file, patients - i * per_file)
        path = out_dir / f"export-{i + 1}.hl7"
        with path.open("wb") as f:
            write(lab.records(n), f)
        paths.append(path)
    return paths


def phase_parse(paths: list[Path]) -> dict:
    from labvault import ingest
    from labvault.ingest.base import Parsed

    read = ingest.reader_for("hl7v2")
    results = units = 0
    started = time.perf_counter()
    for path in paths:
        with path.open("rb") as f:
            for unit in read(f, path.name):
                units += 1
                if isinstance(unit, Parsed):
                    results += unit.record.result_count()
    return {"seconds": time.perf_counter() - started, "results": results, "units": units}


def phase_run(paths: list[Path], data_dir: Path) -> dict:
    from datetime import UTC, datetime

    from labvault import Settings, Vault, local_operator
    from labvault.migrate import make_plan, run

    operator = local_operator("benchmark")
    vault = Vault.init(Settings.embedded(data_dir))
    started = time.perf_counter()
    plan = make_plan(paths, created_by=operator.actor_id, now=datetime.now(UTC))
    plan_path = data_dir.parent / "plan.json"
    plan.write(plan_path)
    planned = time.perf_counter()
    counts = run(vault, operator, plan_path)
    done = time.perf_counter()
    vault.close()
    return {"plan_seconds": planned - started, "seconds": done - planned,
            "results": counts["results"], "units": sum(counts[k] for k in
                                                     ("new", "stored", "quarantined", "duplicate")),
            "quarantined": counts["quarantined"], "plan": str(plan_path)}


def phase_verify(data_dir: Path, plan_path: Path) -> dict:
    from labvault import Settings, Vault, local_operator
    from labvault.migrate import verify

    vault = Vault.open(Settings.load(data_dir))
    started = time.perf_counter()
    report = verify(vault, local_operator("benchmark"), plan_path)
    took = time.perf_counter() - started
    vault.close()
    r = report.to_json()
    return {"seconds": took, "results": r["results_compared"], "match": r["match"],
            "complete": r["complete"]}


def in_child(*args: str) -> dict:
    """Run one phase in a fresh interpreter; return its figures and its peak RSS (MiB)."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _report(figures: dict) -> str:
    figures["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return json.dumps(figures)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it")
    ap.add_argument("--phase", choices=["parse", "run", "verify"], help=argparse.SUPPRESS)
    ap.add_argument("--paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase == "parse":
        print(_report(phase_parse(args.paths)))
        return
    if args.phase == "run":
        print(_report(phase_run(args.paths, args.data_dir)))
        return
    if args.phase == "verify":
        print(_report(phase_verify(args.data_dir, args.plan)))
        return

    print(f"machine: {machine()} (2 cores: figures are single-process)")
    with tempfile.TemporaryDirectory(prefix="labvault-bench-migrate-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        paths = generate(work, args.patients, args.files, args.seed)
        size = sum(p.stat().st_size for p in paths)
        print(f"generated {len(paths)} HL7 v2 files, {size / 2**20:.0f} MiB, for "
              f"{args.patients} patients in {time.perf_counter() - t:.0f} s")
        str_paths = [str(p) for p in paths]
        parse = in_child("--phase", "parse", "--paths", *str_paths)
        print(f"parse only:        {parse['results']:>9,} results in {parse['seconds']:7.1f} s = "
              f"{parse['results'] / parse['seconds']:>8,.0f} results/s   peak RSS "
              f"{parse['max_rss_mib']:.0f} MiB")
        data_dir = work / "vault"
        stored = in_child("--phase", "run", "--data-dir", str(data_dir), "--paths", *str_paths)
        rate = stored["results"] / stored["seconds"]
        print(f"plan (inventory):  {stored['plan_seconds']:.1f} s")
        print(f"stage+parse+store: {stored['results']:>9,} results in {stored['seconds']:7.1f} s "
              f"= {rate:>8,.0f} results/s   peak RSS {stored['max_rss_mib']:.0f} MiB")
        print(f"ratio stored / parse only: {rate / (parse['results'] / parse['seconds']):.3f}")
        checked = in_child("--phase", "verify", "--data-dir", str(data_dir), "--plan",
                           stored["plan"])
        print(f"verify:            {checked['results']:>9,} results in {checked['seconds']:7.1f} s "
              f"= {checked['results'] / checked['seconds']:>8,.0f} results/s, complete="
              f"{checked['complete']}   peak RSS {checked['max_rss_mib']:.0f} MiB")
        db = data_dir / "labvault.sqlite"
        if db.exists():
            print(f"database size: {db.stat().st_size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
