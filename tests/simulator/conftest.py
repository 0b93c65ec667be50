"""The simulation the package's tests share: one run (about 45 s on two cores) of a small lab,
10 simulated days, 12 staff, 400 patients, cheap argon2, with the attacks injected. Tests that
write to its vault work on a copy (`vault_copy`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from labvault import Settings, Vault, local_operator
from labvault.simulator import Options, Outcome, run

DAYS, STAFF, PATIENTS = 10, 12, 400


@pytest.fixture(scope="session")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return run(Options(days=DAYS, staff=STAFF, patients=PATIENTS, seed=5, fast_kdf=True,
                       out_dir=tmp_path_factory.mktemp("sim") / "vault"))


@pytest.fixture(scope="session")
def attacks(outcome: Outcome) -> dict[str, dict]:
    return {a["attack"]: a for a in outcome.report["attacks"]}


@pytest.fixture(scope="session")
def events(outcome: Outcome) -> list:
    vault = Vault.open(Settings.load(outcome.data_dir))
    try:
        return [e.event for e in vault.audit_log.events(local_operator("test: read the log"),
                                                        limit=10_000_000)]
    finally:
        vault.close()


@pytest.fixture
def vault_copy(outcome: Outcome, tmp_path: Path) -> Path:
    """A copy of the simulation's data directory, for a test that writes to it."""
    target = tmp_path / "vault"
    shutil.copytree(outcome.data_dir, target)
    return target
