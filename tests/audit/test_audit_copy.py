"""The second copy of the audit (file journal, syslog), its failure policy, recovery, exports to
real syslog listeners, and the low-space warning."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import socket
import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from labvault import AuditUnavailable, Vault
from labvault.audit.copy import FileCopy
from labvault.audit.export import SyslogSender
from labvault.synthetic import SyntheticLab

HEADER = re.compile(r"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*\])(?: (.*))?$", re.S)
SD = re.compile(r'^\[([^ =\]"]+)((?: [^ =\]"]+="(?:[^"\\\]]|\\.)*")*)\]')
PARAM = re.compile(r' ([^ =\]"]+)="((?:[^"\\\]]|\\.)*)"')


def parse_rfc5424(message: str) -> dict:
    m = HEADER.match(message)
    assert m, "not an RFC 5424 message"
    pri, ts, host, app, procid, msgid, sd, msg = m.groups()
    sdm = SD.match(sd)
    assert sdm and sdm.end() == len(sd)
    params = {k: re.sub(r"\\(.)", r"\1", v) for k, v in PARAM.findall(sdm.group(2))}
    return {"facility": int(pri) // 8, "severity": int(pri) % 8, "timestamp": ts, "host": host,
            "app": app, "procid": procid, "msgid": msgid, "sd_id": sdm.group(1),
            "params": params, "msg": msg}


@pytest.fixture
def records():
    return list(SyntheticLab(9).records(3))


def _break_chain(vault: Vault, backend: str) -> None:
    with vault._records.engine.begin() as conn:
        if backend == "sqlite":
            conn.execute(text("CREATE TRIGGER no_audit BEFORE INSERT ON audit_event "
                              "BEGIN SELECT RAISE(ABORT, 'down'); END"))
        else:
            conn.execute(text("CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'down'; END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER no_audit BEFORE INSERT ON audit_event "
                              "FOR EACH ROW EXECUTE FUNCTION no_audit()"))


def _mend_chain(vault: Vault) -> None:
    with vault._records.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER no_audit" + ("" if vault._records.engine.dialect.name
                                                     == "sqlite" else " ON audit_event")))


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_file_copy_keeps_the_lab_working_and_recover_chains_once(vault, settings, clock, operator,
                                                                 records, backend) -> None:
    vault.put_patients(operator, records)
    vault.close()
    journal = settings.data_dir / "audit.jsonl"
    with_copy = dataclasses.replace(settings, audit_copy="file:audit.jsonl")
    v = Vault.open(with_copy, clock=clock)
    try:
        v.get_patient(operator, records[0].id)
        assert _lines(journal)[-1]["chained"] is True
        assert journal.stat().st_mode & 0o777 == 0o600
        _break_chain(v, backend)
        clock.advance(timedelta(minutes=5))
        when = clock.now()
        assert v.get_record(operator, records[1].id).id == records[1].id  # kept in the file
        v.find_patients(operator, nir=records[2].patient.nir or "")
        kept = [d for d in _lines(journal) if d["chained"] is False]
        assert [d["action"] for d in kept] == ["vault:result:read", "vault:patient:search"]
        assert kept[0]["patient_ids"] == [records[1].id.hex] and kept[0]["seq"] is None
        assert v.audit_log.health()["audit"] == "degraded"
        _mend_chain(v)
        clock.advance(timedelta(hours=1))
        first = v.audit_log.recover(operator)
        second = v.audit_log.recover(operator)
        assert (first.recovered, first.already) == (2, 0)
        assert (second.recovered, second.already) == (0, 2)
        logged = [le for le in v._audit.chain.logged() if "recovered_from" in le.event.detail]
        assert [le.event.action for le in logged] == ["vault:result:read",
                                                      "vault:patient:search"]
        assert logged[0].event.at == when  # the original time, not the recovery's
        assert logged[0].event.patient_ids == (records[1].id,)
        assert {le.event.detail["recovered_from"] for le in logged} == {d["journal_id"]
                                                                        for d in kept}
        assert v.audit_log.verify(operator, None).checked == v.audit_log.length() - 1
    finally:
        v.close()


def test_with_only_syslog_a_chain_failure_fails_closed(vault, settings, clock, operator, records,
                                                      backend) -> None:
    vault.put_patients(operator, records)
    vault.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        v = Vault.open(dataclasses.replace(settings, audit_copy=f"syslog+udp://127.0.0.1:{port}"),
                       clock=clock)
        try:
            v.get_patient(operator, records[0].id)
            got = parse_rfc5424(listener.recv(65535).decode())
            assert got["msgid"] == "vault:patient:read"
            _break_chain(v, backend)
            with pytest.raises(AuditUnavailable):
                v.get_patient(operator, records[0].id)
        finally:
            v.close()


def test_a_failing_copy_only_warns(vault, settings, clock, operator, records, caplog,
                                   tmp_path, backend) -> None:
    vault.put_patients(operator, records)
    vault.close()
    target = tmp_path / "elsewhere.jsonl"
    link = settings.data_dir / "audit.jsonl"
    link.symlink_to(target)  # a planted link is not followed
    v = Vault.open(dataclasses.replace(settings, audit_copy="file:audit.jsonl"), clock=clock)
    try:
        with caplog.at_level(logging.WARNING, logger="labvault.audit"):
            assert v.get_patient(operator, records[0].id).id == records[0].id
        assert not target.exists()
        assert any("audit copy failed" in r.getMessage() for r in caplog.records)
        health = v.audit_log.health()
        assert (health["audit"], health["copy_failures"]) == ("degraded", 1)
        newest = next(v._audit.chain.logged(since_seq=v.audit_log.length() - 1))
        assert newest.event.action == "vault:patient:read"  # the chain has it
        # Both failing: refused.
        _break_chain(v, backend)
        with pytest.raises(AuditUnavailable):
            v.get_patient(operator, records[0].id)
    finally:
        v.close()
    text_logged = " ".join(r.getMessage() for r in caplog.records)
    assert records[0].patient.last_name not in text_logged


def test_low_space_is_reported_at_most_once_a_minute(vault, settings, clock, operator, caplog
                                                     ) -> None:
    vault.close()
    huge = 1 << 40  # MiB: no disk has that much free
    v = Vault.open(dataclasses.replace(settings, audit_low_space_mb=huge,
                                       audit_copy="file:audit.jsonl"), clock=clock)
    try:
        with caplog.at_level(logging.WARNING, logger="labvault.audit"):
            v.count_patients(operator)
            v.count_patients(operator)
            health = v.audit_log.health()
        assert health["audit"] == "low_space"
        expected = {"audit copy"} | ({"database"} if settings.database_url.startswith("sqlite")
                                     else set())
        assert set(health["low_space"]) == expected
        warnings = [r for r in caplog.records if "low disk space" in r.getMessage()]
        assert len(warnings) == len(expected)  # one check within the minute
        caplog.clear()
        clock.advance(timedelta(seconds=61))
        with caplog.at_level(logging.WARNING, logger="labvault.audit"):
            v.count_patients(operator)
        assert len([r for r in caplog.records if "low disk space" in r.getMessage()]) \
            == len(expected)
    finally:
        v.close()
    normal = Vault.open(settings, clock=clock)
    try:
        assert normal.audit_log.health()["audit"] == "ok"
    finally:
        normal.close()


class TcpListener:
    """A syslog collector on 127.0.0.1 reading RFC 6587 octet-counted frames."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.frames: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.server.accept()
        buf = b""
        with conn:
            while chunk := conn.recv(65536):
                buf += chunk
                while b" " in buf:
                    size, _, rest = buf.partition(b" ")
                    if len(rest) < int(size):
                        break
                    self.frames.append(rest[:int(size)].decode())
                    buf = rest[int(size):]

    def close(self) -> list[str]:
        self.thread.join(timeout=30)
        self.server.close()
        return self.frames


def test_syslog_export_to_real_udp_and_tcp_listeners(vault, operator, records) -> None:
    from labvault import Principal, Role
    from labvault.errors import AccessDenied

    vault.put_patients(operator, records)
    vault.get_record(operator, records[0].id)
    with pytest.raises(AccessDenied):
        vault.get_record(Principal("admin:alice", Role.ADMIN, "10.0.0.2", "look"), records[0].id)
    lines = list(vault.audit_log.export(operator, "syslog", hostname="lab-01"))
    jsonl = [json.loads(x) for x in vault.audit_log.export(operator, "jsonl")]

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        sender = SyslogSender("127.0.0.1", udp.getsockname()[1], "udp")
        for line in lines:
            sender.send(line)
        sender.close()
        received = [udp.recv(65535).decode() for _ in lines]
    tcp = TcpListener()
    sender = SyslogSender("127.0.0.1", tcp.port, "tcp")
    for line in lines:
        sender.send(line)
    sender.close()
    assert tcp.close() == received == lines

    parsed = [parse_rfc5424(m) for m in received]
    assert all(p["facility"] == 20 and p["app"] == "labvault" and p["host"] == "lab-01"
               for p in parsed)
    assert [p["msgid"] for p in parsed] == [d["action"] for d in jsonl[:len(parsed)]]
    denied = [p for p in parsed if p["params"]["outcome"] == "denied"]
    assert len(denied) == 1 and denied[0]["severity"] == 4
    assert all(p["severity"] == 6 for p in parsed if p["params"]["outcome"] == "allowed")
    read = next(p for p in parsed if p["msgid"] == "vault:result:read")
    assert read["sd_id"] == "audit@32473"
    assert read["params"]["patient_ids"] == records[0].id.hex
    assert read["params"]["actor"] == operator.actor_id
    assert json.loads(read["params"]["detail"]) == {}
    first = jsonl[0]
    assert parsed[0]["params"]["seq"] == str(first["seq"]) and parsed[0]["params"]["hash"] \
        == first["hash"]
    assert parsed[0]["timestamp"] == first["at"] and first["at"].endswith("Z")


def test_file_copy_refuses_to_follow_a_link(tmp_path) -> None:
    target = tmp_path / "target"
    (tmp_path / "copy.jsonl").symlink_to(target)
    copy = FileCopy(tmp_path / "copy.jsonl")
    from datetime import UTC, datetime

    from labvault.audit.sink import AuditEvent

    with pytest.raises(OSError):
        copy.write(AuditEvent(datetime.now(UTC), "a", "b", "c", "d", "e", "allowed"), None)
    assert not target.exists()


def test_audit_settings_are_saved_and_loaded(tmp_path) -> None:
    from labvault import Settings

    plain = Settings.embedded(tmp_path / "v")
    plain.save()
    loaded = Settings.load(tmp_path / "v")
    assert (loaded.audit_copy, loaded.audit_low_space_mb) == (None, None)
    with_copy = dataclasses.replace(plain, audit_copy="syslog+tcp://127.0.0.1:6514",
                                    audit_low_space_mb=2048)
    with_copy.save()
    again = Settings.load(tmp_path / "v")
    assert (again.audit_copy, again.audit_low_space_mb) == ("syslog+tcp://127.0.0.1:6514", 2048)


def test_an_unknown_copy_setting_is_refused(tmp_path) -> None:
    from labvault.audit.copy import copy_from_setting
    from labvault.errors import ConfigurationError

    for bad in ("ftp://x", "syslog+http://h:1", "syslog+udp://h"):
        with pytest.raises(ConfigurationError):
            copy_from_setting(bad, tmp_path)
    assert copy_from_setting("file:/var/log/x.jsonl", tmp_path).path.as_posix() == "/var/log/x.jsonl"
