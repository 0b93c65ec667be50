"""End-to-end tests of the ``labvault`` command: the installed console script, run in subprocesses.

One vault (60 synthetic patients, seed 3) is built once per module; tests that change it (erase,
key rotation, a planted plaintext file) work on a copy of its data directory. Every run has
LABVAULT_HOME and LABVAULT_PASSPHRASE removed from its environment, no controlling terminal and
an empty stdin, so that a prompt can never block the suite.

No assertion message carries stdout: the patients are synthetic, but the tests are written as if
they were not. Checks on personal values are reduced to a bool before being asserted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from labvault.domain.records import PatientRecord
from labvault.synthetic import SyntheticLab

SEED = 3
PATIENTS = 60
PASSPHRASE = "correct horse battery staple"
SCRIPT = Path(sys.executable).with_name("labvault")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "labvault.cli"]
UUID_LINE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DROPPED_ENV = {"LABVAULT_HOME", "LABVAULT_PASSPHRASE", "FORCE_COLOR", "CLICOLOR_FORCE", "COLUMNS"}


def _env(passphrase: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    # Wide enough that rich never wraps a table cell or an error line; no colour codes.
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    if passphrase is not None:
        env["LABVAULT_PASSPHRASE"] = passphrase
    return env


@dataclass(frozen=True)
class Result:
    """A finished run. Its repr (shown by pytest on a failed assertion) leaves out the output."""

    code: int
    out: str = field(repr=False)
    err: str = field(repr=False)


def run(args: Sequence[str | Path], *, cwd: Path, passphrase: str | None = None) -> Result:
    """Run ``labvault ARGS``; never a traceback, whatever the outcome."""
    proc = subprocess.run([*COMMAND, *map(str, args)], cwd=cwd, env=_env(passphrase),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          start_new_session=True, timeout=120, check=False)
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    no_traceback = "Traceback" not in result.err
    assert no_traceback, f"labvault {' '.join(map(str, args[:2]))} printed a traceback"
    return result


def assert_one_line_error(proc: Result, code: int, *words: str) -> None:
    """Exit ``code``; stderr is one ``error:`` line (plus at most a ``fix:`` hint) naming ``words``."""
    assert proc.code == code
    lines = [ln for ln in proc.err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1
    assert all(ln.startswith(("error:", "fix:")) for ln in lines)
    assert len(lines) <= 2
    for word in words:
        assert word in errors[0].lower()


def ascii_lower(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c)).lower()


def spaced_nir(nir: str) -> str:
    return f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}"


def mentions(text: str, value: str) -> bool:
    """Whether ``value`` appears in ``text`` in any case, with or without accents."""
    low = text.lower()
    return value.lower() in low or ascii_lower(value) in ascii_lower(text)


# -- fixtures ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Built:
    data_dir: Path
    init: Result
    load: Result


@pytest.fixture(scope="module")
def records() -> list[PatientRecord]:
    """The patients `load synthetic --patients 60 --seed 3` stores (the generator is deterministic)."""
    return list(SyntheticLab(SEED).records(PATIENTS))


def _searchable(r: PatientRecord) -> bool:
    # A NIR, orders, and a last name long enough to be a leak-check needle (6 bytes).
    return bool(r.patient.nir and r.orders and len(r.patient.last_name.encode()) >= 6)


@pytest.fixture(scope="module")
def target(records: list[PatientRecord]) -> PatientRecord:
    """Preferably a patient whose last name has an accent, to exercise the name normalisation."""
    candidates = [r for r in records if _searchable(r)]
    accented = [r for r in candidates if not r.patient.last_name.isascii()]
    return (accented or candidates)[0]


@pytest.fixture(scope="module")
def other(records: list[PatientRecord], target: PatientRecord) -> PatientRecord:
    return next(r for r in records if _searchable(r) and r.id != target.id)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("cli")
    data_dir = work / "vault"
    init = run(["init", "--data-dir", data_dir], cwd=work)
    load = run(["load", "synthetic", "--data-dir", data_dir, "--patients", PATIENTS,
                "--seed", SEED], cwd=work)
    return Built(data_dir, init, load)


@pytest.fixture(scope="module")
def vault_dir(built: Built) -> Path:
    assert built.init.code == 0
    assert built.load.code == 0
    return built.data_dir


@pytest.fixture
def vault_copy(vault_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the loaded vault (modes preserved), for tests that change it."""
    copy = tmp_path / "vault"
    shutil.copytree(vault_dir, copy)
    return copy


@pytest.fixture(scope="module")
def passphrase_vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("cli-passphrase")
    data_dir = work / "vault"
    proc = run(["init", "--data-dir", data_dir, "--passphrase"], cwd=work, passphrase=PASSPHRASE)
    assert proc.code == 0
    return data_dir


# -- init and load -------------------------------------------------------------------------------
def test_init_creates_private_vault_and_refuses_a_second_init(built: Built) -> None:
    data_dir = built.data_dir
    assert built.init.code == 0
    assert "vault created" in built.init.out
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    key_file = data_dir / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    config = (data_dir / "labvault.toml").read_text("utf-8")
    assert "database_url" in config
    assert "passphrase_protected = false" in config
    assert built.load.code == 0
    assert f"stored {PATIENTS} patients" in built.load.out

    key_before = key_file.read_bytes()
    again = run(["init", "--data-dir", data_dir], cwd=data_dir.parent)
    assert_one_line_error(again, 1, "already holds a vault")
    assert key_file.read_bytes() == key_before


def test_commands_without_a_vault_say_so(tmp_path: Path) -> None:
    proc = run(["keys", "status", "--data-dir", tmp_path / "nothing"], cwd=tmp_path)
    assert_one_line_error(proc, 1, "no labvault vault")


# -- find and show -------------------------------------------------------------------------------
def test_find_by_nir_plain_and_with_spaces(vault_dir: Path, target: PatientRecord) -> None:
    nir = target.patient.nir
    assert nir is not None
    for form in (nir, spaced_nir(nir)):
        proc = run(["patient", "find", "--data-dir", vault_dir, "--nir", form], cwd=vault_dir.parent)
        assert proc.code == 0
        assert proc.out.split() == [str(target.id)]


def test_find_by_lowercase_unaccented_name_and_birth_date(vault_dir: Path,
                                                         target: PatientRecord) -> None:
    p = target.patient
    proc = run(["patient", "find", "--data-dir", vault_dir, "--name", ascii_lower(p.last_name),
                "--birth-date", p.birth_date.isoformat()], cwd=vault_dir.parent)
    assert proc.code == 0
    ids = proc.out.split()
    assert str(target.id) in ids
    assert all(UUID_LINE.match(i) for i in ids)


def test_find_unknown_nir(vault_dir: Path, records: list[PatientRecord]) -> None:
    known = {r.patient.nir for r in records}
    stranger = next(r.patient.nir for r in SyntheticLab(SEED + 1000).records(20)
                    if r.patient.nir and r.patient.nir not in known)
    proc = run(["patient", "find", "--data-dir", vault_dir, "--nir", stranger], cwd=vault_dir.parent)
    assert proc.code == 1
    assert "no patient found" in proc.out
    assert proc.err.strip() == ""


def test_find_usage_errors(vault_dir: Path) -> None:
    missing = run(["patient", "find", "--data-dir", vault_dir, "--name", "dupont"], cwd=vault_dir.parent)
    assert_one_line_error(missing, 2, "--nir", "--birth-date")
    bad_date = run(["patient", "find", "--data-dir", vault_dir, "--name", "dupont",
                    "--birth-date", "31/12/1970"], cwd=vault_dir.parent)
    assert_one_line_error(bad_date, 2, "yyyy-mm-dd")


def test_show_prints_the_record(vault_dir: Path, target: PatientRecord) -> None:
    proc = run(["patient", "show", str(target.id), "--data-dir", vault_dir], cwd=vault_dir.parent)
    assert proc.code == 0
    assert f"patient {target.id}" in proc.out
    name_shown = target.patient.last_name in proc.out
    assert name_shown, "the patient's last name is missing from `patient show`"
    assert "order" in proc.out


def test_show_rejects_a_non_uuid(vault_dir: Path) -> None:
    proc = run(["patient", "show", "not-a-uuid", "--data-dir", vault_dir], cwd=vault_dir.parent)
    assert_one_line_error(proc, 2, "uuid")
    assert proc.out == ""


# -- leak check ----------------------------------------------------------------------------------
def test_check_leak_is_clean(vault_dir: Path) -> None:
    proc = run(["check", "leak", "--data-dir", vault_dir], cwd=vault_dir.parent)
    assert proc.code == 0
    assert "leak check: CLEAN" in proc.out
    assert "found" not in proc.out


def test_check_leak_reports_a_planted_name_without_printing_it(vault_copy: Path,
                                                              target: PatientRecord) -> None:
    name = target.patient.last_name
    export = vault_copy / "export.csv"
    export.write_text(f"id;last_name\n{target.id};{name}\n", "utf-8")
    proc = run(["check", "leak", "--data-dir", vault_copy], cwd=vault_copy.parent)
    assert proc.code == 1
    assert "LEAK" in proc.out
    assert "CLEAN" not in proc.out
    assert re.search(r"found name x\d+ in \S*export\.csv", proc.out)
    leaked = mentions(proc.out, name) or mentions(proc.err, name)
    assert not leaked, "the leak report printed the planted last name"


# -- erasure and key rotation --------------------------------------------------------------------
def test_erase_then_rotate_keys(vault_copy: Path, target: PatientRecord, other: PatientRecord) -> None:
    cwd = vault_copy.parent
    pid = str(target.id)
    erased = run(["erase", "patient", pid, "--yes", "--data-dir", vault_copy], cwd=cwd)
    assert erased.code == 0
    assert f"patient {pid} erased" in erased.out
    assert "data key destroyed: yes" in erased.out

    shown = run(["patient", "show", pid, "--data-dir", vault_copy], cwd=cwd)
    assert_one_line_error(shown, 1, "erased")
    assert shown.out == ""

    found = run(["patient", "find", "--data-dir", vault_copy, "--nir", target.patient.nir], cwd=cwd)
    assert found.code == 1
    assert "no patient found" in found.out
    assert pid not in found.out

    rotated = run(["keys", "rotate", "--data-dir", vault_copy], cwd=cwd)
    assert rotated.code == 0
    assert "master key version 2 active" in rotated.out
    assert f"{PATIENTS - 1} data keys rewrapped" in rotated.out
    assert "retired versions: 1" in rotated.out

    status = run(["keys", "status", "--data-dir", vault_copy], cwd=cwd)
    assert status.code == 0
    assert status.out.splitlines() == [f"master key version 2: {PATIENTS - 1} data keys"]

    still = run(["patient", "show", str(other.id), "--data-dir", vault_copy], cwd=cwd)
    assert still.code == 0
    name_shown = other.patient.last_name in still.out
    assert name_shown, "`patient show` lost the record after the key rotation"


# -- passphrase-protected key file ---------------------------------------------------------------
def test_passphrase_vault_works_with_the_env_var(passphrase_vault: Path, records: list[PatientRecord]
                                                 ) -> None:
    cwd = passphrase_vault.parent
    assert "passphrase_protected = true" in (passphrase_vault / "labvault.toml").read_text("utf-8")
    sealed = json.loads((passphrase_vault / "master.key").read_bytes())
    assert sealed["format"] == "labvault-keyfile-sealed/1"
    assert stat.S_IMODE((passphrase_vault / "master.key").stat().st_mode) == 0o600

    load = run(["load", "synthetic", "--data-dir", passphrase_vault, "--patients", 5, "--seed", SEED],
               cwd=cwd, passphrase=PASSPHRASE)
    assert load.code == 0
    first = next(r for r in records[:5] if r.patient.nir)
    found = run(["patient", "find", "--data-dir", passphrase_vault, "--nir", first.patient.nir],
                cwd=cwd, passphrase=PASSPHRASE)
    assert found.code == 0
    assert found.out.split() == [str(first.id)]
    status = run(["keys", "status", "--data-dir", passphrase_vault], cwd=cwd, passphrase=PASSPHRASE)
    assert status.code == 0
    assert status.out.splitlines() == ["master key version 1: 5 data keys"]


def test_passphrase_vault_rejects_a_wrong_passphrase(passphrase_vault: Path) -> None:
    proc = run(["keys", "status", "--data-dir", passphrase_vault], cwd=passphrase_vault.parent,
               passphrase="not the passphrase")
    assert_one_line_error(proc, 1, "passphrase")
    assert proc.out == ""


def test_passphrase_vault_without_the_env_var_fails_clearly(passphrase_vault: Path) -> None:
    proc = run(["keys", "status", "--data-dir", passphrase_vault], cwd=passphrase_vault.parent)
    assert_one_line_error(proc, 1, "passphrase")


# -- demo ----------------------------------------------------------------------------------------
def test_demo_runs_twice_and_refuses_a_foreign_directory(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    for _ in range(2):  # the second run replaces the first demo
        proc = run(["demo", "--data-dir", demo_dir, "--patients", 200], cwd=tmp_path)
        assert proc.code == 0
        assert "demo done" in proc.out
        assert "leak check: CLEAN" in proc.out
        assert "NIR lookup: 1 match" in proc.out
        assert "13 records read, then refused (account locked)" in proc.out
        assert "found a decoy by NIR: locked at once" in proc.out
        assert "critical volume" in proc.out and "critical honeytoken" in proc.out
    assert stat.S_IMODE(demo_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((demo_dir / "master.key").stat().st_mode) == 0o600

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me\n", "utf-8")
    proc = run(["demo", "--data-dir", foreign, "--patients", 10], cwd=tmp_path)
    assert_one_line_error(proc, 1, "not a labvault demo")
    assert (foreign / "todo.txt").read_text("utf-8") == "keep me\n"
    assert sorted(p.name for p in foreign.iterdir()) == ["todo.txt"]


def test_demo_refuses_to_replace_a_real_vault(vault_copy: Path) -> None:
    key_before = (vault_copy / "master.key").read_bytes()
    proc = run(["demo", "--data-dir", vault_copy, "--patients", 10], cwd=vault_copy.parent)
    assert proc.code == 1
    assert (vault_copy / "master.key").read_bytes() == key_before
