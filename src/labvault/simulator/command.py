"""``labvault simulate``: the command line of the simulator (see `labvault.simulator`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from labvault.cli_support import console, err, progress_bar


def simulate(
    days: Annotated[int, typer.Option(min=1, help="Simulated days (attacks start on day 8).")] = 30,
    staff: Annotated[int, typer.Option(min=6, help="Staff accounts (secretaries, technicians, "
                                                   "biologists).")] = 50,
    patients: Annotated[int, typer.Option(min=50, help="Synthetic patients.")] = 5000,
    seed: int = 1,
    out_dir: Annotated[Path | None, typer.Option(
        "--out-dir", help="Keep the simulated lab's vault in OUT_DIR/vault and the report in "
                          "OUT_DIR/simulation.json (OUT_DIR empty or new); without it the vault "
                          "is in a temporary directory, removed afterwards.")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json-out", help="Write the report as JSON here (with the ground truth: the ids of "
                           "the patients each attacker got). Default: OUT_DIR/simulation.json.")]
    = None,
    fast_kdf: Annotated[bool, typer.Option(
        "--fast-kdf", help="Cheap argon2 password hashing (1 MiB, one pass): for tests and "
                           "benchmarks only, never for a real vault.")] = False,
) -> None:
    """Build a synthetic lab and replay its work through the API with attacks injected; report
    what the watcher caught, how soon, and its false alerts."""
    from labvault.simulator import Options, run
    from labvault.simulator.report import lines

    if out_dir is not None and out_dir.exists() and any(out_dir.iterdir()):
        err.print(f"error: {out_dir} is not empty")
        raise typer.Exit(1)
    with progress_bar() as bar:
        tasks: dict[str, object] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                label = "storing patients" if stage == "patients" else "simulated days"
                tasks[stage] = bar.add_task(label, total=total)
            bar.update(tasks[stage], completed=done)  # type: ignore[arg-type]

        outcome = run(Options(days=days, staff=staff, patients=patients, seed=seed,
                              out_dir=out_dir / "vault" if out_dir is not None else None,
                              fast_kdf=fast_kdf), progress)
    for line in lines(outcome.report):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    target = json_out or (out_dir / "simulation.json" if out_dir is not None else None)
    if target is not None:
        target.write_text(json.dumps(outcome.report, indent=2, sort_keys=True) + "\n", "utf-8")
        console.print(f"report written to {target}")
    if outcome.report["simulation"]["server_errors"]:
        err.print(f"error: {outcome.report['simulation']['server_errors']} server errors")
        raise typer.Exit(1)
