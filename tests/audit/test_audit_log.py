"""The chained audit log in the real database: concurrent writers, fail closed, who-read,
older vaults, key rotation, the verifier key file."""

from __future__ import annotations

import itertools
import os
import stat
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from db_support import break_audit_chain
from labvault import AuditUnavailable, Principal, Role, Vault
from labvault.access.permissions import Permission
from labvault.audit.chain import CHECKPOINT
from labvault.crypto.envelope import AesGcmFieldCipher
from labvault.errors import AccessDenied
from labvault.synthetic import SyntheticLab
from labvault.vault.audit import VERIFIER_FILE, read_verifier_key

PER_PROCESS = 300

WRITER = f"""
import sys, uuid
from datetime import UTC, datetime
from pathlib import Path
from labvault import Settings, Vault
from labvault.audit.sink import AuditEvent

vault = Vault.open(Settings.load(Path(sys.argv[1])))
name = sys.argv[2]
vault.audit_log.length()  # connected and ready
print("ready", flush=True)
sys.stdin.readline()  # both are ready: start together
for i in range({PER_PROCESS}):
    vault._audit.append(AuditEvent(datetime.now(UTC), name, "technician", "10.0.0.1",
                                   "concurrency", "vault:result:read", "allowed",
                                   (uuid.uuid4(),), {{"i": i}}))
vault.close()
print("done")
"""


@pytest.fixture
def records():
    return list(SyntheticLab(5).records(4))


def test_two_processes_appending_at_once_keep_one_chain(vault, settings, operator,
                                                        backend) -> None:
    settings.save()
    before = vault.audit_log.length()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(settings.data_dir), f"writer:{w}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
             for w in (1, 2)]
    # A real barrier: each writer has imported, opened the vault and connected before either
    # is told to start, so the two append at the same time whatever the machine's load.
    assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert all(o.strip() == "done" for o in outs)
    k0 = read_verifier_key(settings.data_dir / VERIFIER_FILE)
    report = vault.audit_log.verify(operator, k0)
    assert report.checked == before + 2 * PER_PROCESS
    with vault._records.engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(text("SELECT seq FROM audit_event ORDER BY id"))]
        actors = [r[0] for r in conn.execute(text("SELECT actor FROM audit_event ORDER BY seq"))]
    assert sorted(seqs) == list(range(1, len(seqs) + 1))
    assert actors.count("writer:1") == actors.count("writer:2") == PER_PROCESS
    if backend == "postgres":
        # Interleaved, not one after the other: the two really did write at the same time.
        # (SQLite's busy handler tends to let one writer finish first.)
        switches = sum(1 for a, b in itertools.pairwise(actors)
                       if a != b and a.startswith("writer") and b.startswith("writer"))
        assert switches > 1


class CountingCipher(AesGcmFieldCipher):
    opened = 0
    made = 0

    def __init__(self, dek, key_version) -> None:
        type(self).made += 1
        super().__init__(dek, key_version)

    def open(self, *args, **kwargs):
        type(self).opened += 1
        return super().open(*args, **kwargs)


def test_no_audit_means_nothing_is_decrypted(vault, settings, clock, operator, records,
                                             backend) -> None:
    vault.put_patients(operator, records)
    vault.close()
    v = Vault.open(settings, clock=clock, cipher_factory=CountingCipher)
    try:
        v.get_record(operator, records[0].id)
        assert CountingCipher.opened > 0  # the counter does count real openings
        CountingCipher.opened = CountingCipher.made = 0
        head = v._audit.chain.head()
        break_audit_chain(v)
        with pytest.raises(AuditUnavailable) as caught:
            v.get_patient(operator, records[1].id)
        with pytest.raises(AuditUnavailable):
            v.get_record(operator, records[2].id)
        assert (CountingCipher.made, CountingCipher.opened) == (0, 0)
        assert v._audit.chain.head() == head  # nothing half-written
        with v._records.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM audit_event_patient WHERE seq > :s"),
                                {"s": head.seq}).scalar() == 0
        message = str(caught.value)
        assert records[1].patient.last_name not in message
        assert str(records[1].id) not in message
    finally:
        v.close()


def test_who_read_lists_every_access_to_that_record_only(vault, operator, records) -> None:
    vault.put_patients(operator, records)
    a, b = records[0].id, records[1].id
    bio = Principal("biologist:ines", Role.BIOLOGIST, "10.1.0.5", "result validation")
    sec = Principal("secretary:paul", Role.SECRETARY, "10.1.0.9", "appointment")
    admin = Principal("admin:alice", Role.ADMIN, "10.1.0.2", "curiosity")
    dpo = Principal("dpo:claire", Role.DPO, "10.1.0.3", "patient request")
    vault.get_record(bio, a)
    vault.get_patient(sec, a)
    with pytest.raises(AccessDenied):
        vault.get_record(admin, a)
    vault.get_record(bio, b)
    report = vault.audit_log.who_read(dpo, a)
    got = [(x.actor, x.role, x.action, x.purpose, x.outcome) for x in report]
    assert got == [
        (operator.actor_id, "local_operator", "vault:patient:create", operator.purpose, "allowed"),
        ("biologist:ines", "biologist", "vault:result:read", "result validation", "allowed"),
        ("secretary:paul", "secretary", "vault:patient:read", "appointment", "allowed"),
        ("admin:alice", "admin", "vault:patient:read", "curiosity", "denied"),
    ]
    assert [x.seq for x in report] == sorted(x.seq for x in report)
    # The report is itself an audited access, and not everyone may ask for it.
    last = vault.audit_log.tail(dpo, 2)[0].event
    assert (last.actor, last.action, last.patient_ids) == ("dpo:claire", "audit:log:read", (a,))
    with pytest.raises(AccessDenied):
        vault.audit_log.who_read(bio, a)
    assert {x.actor for x in vault.audit_log.who_read(dpo, b)} == {operator.actor_id,
                                                                    "biologist:ines"}


def test_an_older_vault_gets_its_chain_on_open(vault, settings, clock, operator,
                                               records) -> None:
    vault.put_patients(operator, records)
    vault.get_record(operator, records[0].id)
    vault.close()
    engine_url = settings.database_url
    from labvault.store.engine import make_engine

    engine = make_engine(engine_url)
    with engine.begin() as conn:  # as the table was before the chain existed
        conn.execute(text("UPDATE audit_event SET seq = NULL, hash = NULL, tag = NULL"))
        for table in ("audit_head", "audit_checkpoint", "audit_event_patient"):
            conn.execute(text(f"DELETE FROM {table}"))
        old = conn.execute(text("SELECT count(*) FROM audit_event")).scalar()
    engine.dispose()
    (settings.data_dir / VERIFIER_FILE).unlink()
    v = Vault.open(settings, clock=clock)
    try:
        k0 = read_verifier_key(settings.data_dir / VERIFIER_FILE)
        report = v.audit_log.verify(operator, k0)
        assert report.checked == old
        dpo = Principal("dpo:claire", Role.DPO, "10.1.0.3", "patient request")
        assert [x.action for x in v.audit_log.who_read(dpo, records[0].id)] == [
            "vault:patient:create", "vault:result:read"]
    finally:
        v.close()
    again = Vault.open(settings, clock=clock)  # the chain is not started twice
    try:
        assert again.audit_log.verify(operator, k0).checked == old + 2  # + verify, who-read
    finally:
        again.close()


def test_the_verifier_key_file_is_private_and_never_replaced(vault, settings) -> None:
    path = settings.data_dir / VERIFIER_FILE
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600
    before = path.read_bytes()
    Vault.open(settings).close()
    assert path.read_bytes() == before
    assert "k0" in before.decode()


def test_rotation_moves_the_epoch_key_and_the_log_keeps_going(vault, settings, clock,
                                                              operator) -> None:
    vault.rotate_keys(operator)
    assert vault._audit.chain.head().kek_version == 2
    vault.close()
    v = Vault.open(settings, clock=clock)
    try:
        assert v.count_patients(operator) == 0
        k0 = read_verifier_key(settings.data_dir / VERIFIER_FILE)
        assert v.audit_log.verify(operator, k0).checked == v.audit_log.length() - 1
    finally:
        v.close()


def test_checkpoints_are_written_and_signed_as_the_log_grows(vault, operator, clock) -> None:
    from labvault.audit.sink import AuditEvent

    chain = vault._audit.chain

    def event(i: int) -> AuditEvent:
        clock.advance(timedelta(milliseconds=1))
        return AuditEvent(clock.now(), "technician:x", "technician", "10.0.0.1",
                          "checkpoint test", str(Permission.RESULT_READ), "allowed",
                          (uuid.uuid4(),), {"i": i})

    chain.append_many([event(i) for i in range(CHECKPOINT - 3 - chain.head().seq)])
    for i in range(10):  # one at a time across the checkpoint
        chain.append(event(i))
    marks = vault.audit_log.checkpoints(operator)
    assert [(c.first, c.last) for c in marks.checkpoints] == [(1, CHECKPOINT)]
    assert vault.audit_log.verify(operator, None).checkpoints == 1


def test_health_is_for_administrators_and_log_readers(vault) -> None:
    dpo = Principal("dpo:claire", Role.DPO, "10.1.0.3", "health page")
    admin = Principal("admin:alice", Role.ADMIN, "10.1.0.2", "health page")
    bio = Principal("biologist:ines", Role.BIOLOGIST, "10.1.0.5", "health page")
    assert vault.audit_log.health(dpo)["audit"] == vault.audit_log.health(admin)["audit"] == "ok"
    with pytest.raises(AccessDenied):
        vault.audit_log.health(bio)
    last = vault.audit_log.tail(dpo, 2)[0].event
    assert (last.actor, last.outcome) == ("biologist:ines", "denied")


def test_the_patient_index_is_verified_even_for_an_event_naming_a_patient_twice(
        vault, operator, records, backend) -> None:
    from labvault.audit.chain import TamperDetected
    from labvault.audit.sink import AuditEvent

    vault.put_patients(operator, records)
    twice = (records[0].id, records[1].id, records[0].id)
    logged = vault._audit.chain.append(AuditEvent(vault._clock.now(), "biologist:1",
                                                  "biologist", "10.0.0.1", "review",
                                                  "vault:result:read", "allowed", twice))
    vault.get_record(operator, records[2].id)
    assert vault.audit_log.verify(operator, None).checked == vault.audit_log.length() - 1
    assert logged.seq in [a.seq for a in vault.audit_log.who_read(operator, records[0].id)]
    pid = records[1].id.hex if backend == "sqlite" else records[1].id
    with vault._records.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event_patient WHERE seq = :s AND patient_id = :p"),
                     {"s": logged.seq, "p": pid})
    with pytest.raises(TamperDetected) as caught:
        vault.audit_log.verify(operator, None)
    assert (caught.value.position, caught.value.kind) == (logged.seq, "index")
    with pytest.raises(TamperDetected) as caught:
        vault.audit_log.verify(operator, None, start=2, end=logged.seq)
    assert (caught.value.position, caught.value.kind) == (logged.seq, "index")
    assert vault.audit_log.verify(operator, None, end=logged.seq - 1).checked == logged.seq - 1
