"""``labvault alerts …``, ``accounts unlock``, ``honeytokens seed`` and the standalone
``labvault watch`` as the lab's operator runs them, on alerts raised by a biologist reading
many records within a minute (a fixed clock drives the vault in the test; the commands run on
the system clock). No output may hold a patient's name or NIR."""

from __future__ import annotations

import json
import re
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api_support import PASSWORD, enrol, personal_values
from labvault import FixedClock, Principal, Role, Settings, Vault, local_operator
from labvault.api.serve import start_watching
from labvault.cli import app
from labvault.synthetic import SyntheticLab
from labvault.watch.commands import POSITION_FILE

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ALERT_LINE = re.compile(rf"^alert ({UUID.pattern}) (\w+) ([\w-]+) (\S+)$", re.M)
SOURCE = "10.1.0.5"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 3, 2, 8, 30, tzinfo=UTC))


@pytest.fixture
def patients():
    return list(SyntheticLab(seed=7, results_per_patient=1).records(16))


@pytest.fixture
def data_dir(tmp_path: Path, clock, patients) -> Path:
    d = tmp_path / "vault"
    vault = Vault.init(Settings.embedded(d), clock=clock)
    try:
        vault.put_patients(local_operator("test data"), patients)
    finally:
        vault.close()
    return d


@pytest.fixture
def lv(data_dir: Path, patients):
    runner = CliRunner()
    secrets = personal_values(patients)

    def run(*args: str, env: dict[str, str | None] | None = None):
        result = runner.invoke(app, [*args, "-d", str(data_dir)],
                               env={"COLUMNS": "250", "NO_COLOR": "1", "LABVAULT_HOME": "",
                                    **(env or {})})
        leaked = [v for v in secrets if v in result.output]
        assert not leaked
        return result

    return run


def open_vault(data_dir: Path, clock: FixedClock) -> Vault:
    return Vault.open(Settings.load(data_dir), clock=clock)


def read_fast(data_dir: Path, clock: FixedClock, patients, *, watch: bool) -> str:
    """A biologist reads 15 records, one every 2 s; with `watch`, under the in-process
    watcher. The actor's name."""
    vault = open_vault(data_dir, clock)
    try:
        if watch:
            vault.watch.start(background=False)
        bio = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, SOURCE, "care", "r")
        for r in patients[:15]:
            vault.get_record(bio, r.id)
            clock.advance(timedelta(seconds=2))
        vault.watch.stop()
    finally:
        vault.close()
    return bio.actor_id


def alerts_of(data_dir: Path, clock: FixedClock) -> list:
    vault = open_vault(data_dir, clock)
    try:
        return vault.watch.alerts(local_operator("test"))
    finally:
        vault.close()


def actions(data_dir: Path, clock: FixedClock) -> list[tuple[str, str, str]]:
    vault = open_vault(data_dir, clock)
    try:
        return [(e.action, e.outcome, e.actor.split(":")[0]) for e in vault._audit.events()]
    finally:
        vault.close()


def test_alerts_list_show_and_ack(lv, data_dir, clock, patients):
    actor = read_fast(data_dir, clock, patients, watch=True)
    (alert,) = alerts_of(data_dir, clock)
    assert alert.occurrences == 3  # reads 13, 14 and 15 went over the limit

    r = lv("alerts", "list")
    assert r.exit_code == 0, r.output
    assert "1 alerts" in r.output
    row = next(line for line in r.output.splitlines() if str(alert.id) in line)
    for cell in ("2026-03-02 08:30:24", "critical", "volume", actor, "open", "locked"):
        assert cell in row
    assert re.search(r"\b3\b", row)

    r = lv("alerts", "show", str(alert.id))
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["alert"]["id"] == str(alert.id)
    assert (doc["alert"]["rule"], doc["alert"]["actor"], doc["alert"]["occurrences"]) == (
        "volume", actor, 3)
    assert doc["alert"]["evidence"] == {"limit": 12, "patients": 13, "role": "biologist",
                                        "window": "1m"}
    assert sorted((d["channel"], d["outcome"]) for d in doc["deliveries"]) == [
        ("email", "not_configured"), ("syslog", "not_configured"), ("webhook", "not_configured")]
    assert lv("alerts", "show", "not-a-uuid").exit_code == 2
    r = lv("alerts", "show", str(uuid.uuid4()))
    assert r.exit_code == 1 and "no alert" in r.output

    r = lv("alerts", "ack", str(alert.id), "--reason", "patient called to complain")
    assert r.exit_code == 2 and "confirmed" in r.output
    r = lv("alerts", "ack", str(alert.id), "--reason", "false-positive")
    assert r.exit_code == 0, r.output
    assert f"alert {alert.id} acknowledged by local-operator:" in r.output

    r = lv("alerts", "list", "--status", "open")
    assert r.exit_code == 0 and "0 alerts" in r.output
    r = lv("alerts", "list", "--status", "acknowledged", "--limit", "5")
    assert r.exit_code == 0 and str(alert.id) in r.output and "acknowledged" in r.output
    assert lv("alerts", "list", "--status", "closed").exit_code == 2
    (alert,) = alerts_of(data_dir, clock)
    assert alert.status == "acknowledged"
    seen = actions(data_dir, clock)
    assert ("watch:alert:read", "allowed", "local-operator") in seen
    assert ("watch:alert:ack", "allowed", "local-operator") in seen


def test_the_local_operator_unlocks_alone(lv, data_dir, clock, patients):
    vault = open_vault(data_dir, clock)
    try:
        vault.watch.start(background=False)
        account_id, email, totp = enrol(vault, local_operator("test"), clock, Role.BIOLOGIST)
        challenge = vault.accounts.login(email, PASSWORD, SOURCE)
        token = vault.accounts.complete_login(challenge, code=totp.at(clock.now()),
                                              source=SOURCE).token
        for r in patients[:13]:
            p = vault.accounts.authenticate(token, source=SOURCE, purpose="care", request_id="r")
            vault.get_record(p, r.id)
        vault.watch.stop()
    finally:
        vault.close()
    (alert,) = alerts_of(data_dir, clock)
    assert (alert.actor, alert.response) == (f"account:{account_id}", "locked")

    r = lv("accounts", "unlock", str(account_id))
    assert r.exit_code == 0, r.output
    assert f"account {account_id} unlocked" in r.output
    (alert,) = alerts_of(data_dir, clock)
    assert alert.status == "acknowledged" and alert.acknowledged_by.startswith("local-operator:")
    r = lv("accounts", "list")
    assert next(line for line in r.output.splitlines() if str(account_id) in line).count("active")
    r = lv("accounts", "unlock", str(account_id))
    assert r.exit_code == 1 and "no locked account" in r.output
    assert lv("accounts", "unlock", "nope").exit_code == 2
    r = lv("accounts", "unlock", "--help")
    assert "unlocks alone" in " ".join(r.output.split())


def test_honeytokens_seed_writes_the_contacts_file(lv, data_dir, tmp_path, clock):
    out = tmp_path / "contacts.txt"
    out.write_text("old\n")
    out.chmod(0o644)
    r = lv("honeytokens", "seed", "--count", "3", "--contacts-out", str(out))
    assert r.exit_code == 0, r.output
    assert "3 decoy patients stored; 3 contacts to monitor written" in r.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    contacts = out.read_text().splitlines()
    assert len(contacts) == 3 and all(c.endswith("@decoy.invalid") for c in contacts)
    assert not any(c in r.output for c in contacts)  # only in the file, by default

    printed = tmp_path / "printed.txt"
    r = lv("honeytokens", "seed", "--count", "2", "--mail-domain", "decoy.lab.example",
           "--contacts-out", str(printed), "--print")
    assert r.exit_code == 0, r.output
    contacts = printed.read_text().splitlines()
    assert len(contacts) == 2 and all(c in r.output for c in contacts)
    assert all(c.endswith("@decoy.lab.example") for c in contacts)

    bad = tmp_path / "bad.txt"
    r = lv("honeytokens", "seed", "--count", "2", "--mail-domain", "a b@c",
           "--contacts-out", str(bad))
    assert r.exit_code == 2 and not bad.exists()
    r = lv("honeytokens", "seed", "--count", "2", "--contacts-out", str(tmp_path / "no" / "f"))
    assert r.exit_code == 1 and "cannot write" in r.output
    assert ("watch:honeytoken:manage", "allowed", "local-operator") in actions(data_dir, clock)


def test_watch_once_raises_from_the_log_and_resumes(lv, data_dir, clock, patients):
    position = data_dir / POSITION_FILE
    r = lv("watch", "--once")  # the first run starts at the head: earlier events are history
    assert r.exit_code == 0, r.output
    assert "0 new alerts" in r.output
    assert stat.S_IMODE(position.stat().st_mode) == 0o600
    start = json.loads(position.read_text())["seq"]

    actor = read_fast(data_dir, clock, patients, watch=False)  # no in-process watcher
    assert alerts_of(data_dir, clock) == []

    r = lv("watch", "--once", "--since-days", "300")
    assert r.exit_code == 0, r.output
    assert f"watching the audit log after event {start} " in r.output
    lines = ALERT_LINE.findall(r.output)
    (alert,) = alerts_of(data_dir, clock)
    assert lines == [(str(alert.id), "critical", "volume", actor)]
    assert (alert.raised_at, alert.occurrences, alert.response) == (
        datetime(2026, 3, 2, 8, 30, 24, tzinfo=UTC), 3, "locked")
    saved = json.loads(position.read_text())["seq"]
    assert saved > start

    r = lv("watch", "--once", "--since-days", "300")  # learns up to the position, then nothing
    assert r.exit_code == 0, r.output
    assert ALERT_LINE.findall(r.output) == [] and "0 new alerts" in r.output
    assert len(alerts_of(data_dir, clock)) == 1
    assert ("watch:alert:raise", "allowed", "labvault") in actions(data_dir, clock)

    position.write_text(json.dumps({"seq": saved, "hash": "00" * 32}))
    r = lv("watch", "--once")
    assert r.exit_code == 0 and "does not hold" in r.output  # another log's position
    position.write_text("garbage")
    r = lv("watch", "--once")
    assert r.exit_code == 0 and "unreadable" in r.output


@pytest.mark.parametrize("command", [["watch", "--once"], ["serve", "--port", "1"]])
@pytest.mark.parametrize("toml, cause", [
    ("[volume.limits.biologist]\n1m = 'twelve'\n", "volume.limits.biologist.1m must be"),
    ("[volum]\n", "unknown setting volum"),
    ("[channels.webhook]\nurl = 'https://siem.example/hook'\nsecret_env = 'LV_TEST_UNSET'\n",
     "names the environment variable LV_TEST_UNSET, unset or empty"),
])
def test_a_configuration_error_stops_the_start(lv, data_dir, command, toml, cause):
    (data_dir / "watch.toml").write_text(toml)
    r = lv(*command, env={"LV_TEST_UNSET": None})
    assert r.exit_code == 1
    assert cause in r.output
    assert r.output.startswith("error: ") and "Traceback" not in r.output


def test_serve_detection_starts_in_process(data_dir, clock, patients):
    vault = open_vault(data_dir, clock)
    try:
        ticker = start_watching(vault, data_dir)
        try:
            assert vault.watch.watcher is not None
            bio = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, SOURCE, "care", "r")
            for r in patients[:13]:
                vault.get_record(bio, r.id)
            vault.watch.watcher.notifier.flush()
            (alert,) = vault.watch.alerts(local_operator("test"))
            assert alert.actor == bio.actor_id
        finally:
            ticker.stop()
            vault.watch.stop()
        assert vault.watch.watcher is None
    finally:
        vault.close()


def test_report_mail_raises_on_a_decoy_recipient(lv, data_dir, tmp_path, clock):
    out = tmp_path / "contacts.txt"
    assert lv("honeytokens", "seed", "--count", "2", "--contacts-out", str(out)).exit_code == 0
    decoy = out.read_text().splitlines()[0]
    message = tmp_path / "message.eml"
    message.write_bytes(f"From: x@phish.example\r\nTo: {decoy}\r\nSubject: s\r\n\r\nb\r\n".encode())
    r = lv("honeytokens", "report-mail", str(message))
    assert r.exit_code == 3, r.output
    (line,) = ALERT_LINE.findall(r.output)
    assert line[1:] == ("critical", "decoy-contact", "external:phish.example")
    assert decoy not in r.output
    message.write_bytes(b"From: x@phish.example\r\nTo: a@lab.example\r\n\r\nb\r\n")
    r = lv("honeytokens", "report-mail", str(message))
    assert r.exit_code == 0 and "no decoy address" in r.output


def test_index_care_sites_links_every_patient(lv, data_dir, clock, patients):
    from sqlalchemy import delete, func, select

    from labvault.store.tables import patient_site

    vault = open_vault(data_dir, clock)
    try:
        with vault._records.engine.begin() as conn:
            expected = conn.execute(select(func.count()).select_from(patient_site)).scalar()
            conn.execute(delete(patient_site))
    finally:
        vault.close()
    r = lv("index-care-sites")
    assert r.exit_code == 0, r.output
    assert f"{len(patients)} patients, {expected} patient-site links" in r.output
