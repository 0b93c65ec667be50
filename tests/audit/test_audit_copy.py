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

from db_support import break_audit_chain, mend_audit_chain
from labvault import AuditUnavailable, Vault
from labvault.audit.copy import FileCopy
from labvault.audit.export import SyslogSender
from labvault.secret import Secret
from labvault.synthetic import SyntheticLab

HEADER = re.compile(r"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*\])(?: (.*))?$", re.S)
SD = re.compile(r'^\[([^ =\]"]+)((?: [^ =\]"]+="(?:[^"\\\]]|\\.)*")*)\]')
PARAM = re.compile(r' ([^ =\]"]+)="((?:[^"\\\]]|\\.)*)"')
KEY = Secret(bytes(range(32)))


def parse_rfc5424(message: str) -> dict:
    m = HEADER.match(message)
    assert m, "not an RFC 5424 message"
    pri, ts, host, app, procid, msgid, sd, msg = m.groups()
    sdm = SD.match(sd)
    assert sdm and sdm.end() == len(sd)
    # RFC 5424 6.3.3: only \", \\ and \] are escapes; any other backslash is itself.
    params = {k: re.sub(r'\\(["\\\]])', r"\1", v) for k, v in PARAM.findall(sdm.group(2))}
    return {"facility": int(pri) // 8, "severity": int(pri) % 8, "timestamp": ts, "host": host,
            "app": app, "procid": procid, "msgid": msgid, "sd_id": sdm.group(1),
            "params": params, "msg": msg}


@pytest.fixture
def records():
    return list(SyntheticLab(9).records(3))


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
        break_audit_chain(v)
        clock.advance(timedelta(minutes=5))
        when = clock.now()
        assert v.get_record(operator, records[1].id).id == records[1].id  # kept in the file
        v.find_patients(operator, nir=records[2].patient.nir or "")
        kept = [d for d in _lines(journal) if d["chained"] is False]
        assert [d["action"] for d in kept] == ["vault:result:read", "vault:patient:search"]
        assert kept[0]["patient_ids"] == [records[1].id.hex] and kept[0]["seq"] is None
        assert v.audit_log.health()["audit"] == "degraded"
        mend_audit_chain(v)
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
            break_audit_chain(v)
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
        break_audit_chain(v)
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
    copy = FileCopy(tmp_path / "copy.jsonl", KEY)
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
            copy_from_setting(bad, tmp_path, KEY)
    assert copy_from_setting("file:/var/log/x.jsonl", tmp_path,
                             KEY).path.as_posix() == "/var/log/x.jsonl"
    with pytest.raises(ConfigurationError):
        copy_from_setting("file:x.jsonl", tmp_path)  # a file copy needs the journal key


# -- the journal's MACs ------------------------------------------------------------------------
def _event(i: int, **kw):
    from datetime import UTC, datetime

    from labvault.audit.sink import AuditEvent

    return AuditEvent(datetime(2026, 3, 2, 9, i, tzinfo=UTC), f"biologist:{i}", "biologist",
                      "10.0.0.7", "result review", "vault:result:read", "allowed", **kw)


def _journal_of(vault: Vault, path, events: int = 4) -> FileCopy:
    from labvault.audit.copy import JOURNAL_KEY

    copy = FileCopy(path, vault._keys.index_key(JOURNAL_KEY))
    for i in range(events):
        copy.write(_event(i), None)
    return copy


def _refused_at(vault: Vault, operator, path, line: int) -> None:
    from labvault.audit.copy import JournalTampered

    before = vault.audit_log.length()
    with pytest.raises(JournalTampered) as caught:
        vault.audit_log.recover(operator, path)
    assert caught.value.line == line
    assert vault.audit_log.length() == before + 1  # the recovery's own event, nothing else
    assert not [le for le in vault._audit.chain.logged() if "recovered_from" in le.event.detail]


def _rewrite(path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def test_every_journal_line_carries_a_chained_mac(vault, operator, tmp_path) -> None:
    path = tmp_path / "journal.jsonl"
    _journal_of(vault, path)
    docs = _lines(path)
    assert [d["n"] for d in docs] == [1, 2, 3, 4]
    assert all(re.fullmatch("[0-9a-f]{64}", d["mac"]) for d in docs)
    assert len({d["mac"] for d in docs}) == 4
    done = vault.audit_log.recover(operator, path)
    assert (done.recovered, done.already) == (4, 0)


def test_a_forged_journal_line_is_refused_and_nothing_is_chained(vault, operator,
                                                                  tmp_path) -> None:
    """The forger has write access to the file, not the key: a line without a MAC, with a MAC
    of his own, or copied from a genuine line with another event, is found, at its line."""
    path = tmp_path / "journal.jsonl"
    _journal_of(vault, path)
    genuine = path.read_bytes().splitlines(keepends=True)
    forged = json.loads(genuine[1])
    forged.update(actor="biologist:someone-else", chained=False)  # reusing its journal id
    _rewrite(path, [*genuine, (json.dumps(forged) + "\n").encode()])
    _refused_at(vault, operator, path, 5)
    forged.update(n=5, mac="ab" * 32)
    _rewrite(path, [*genuine, (json.dumps(forged) + "\n").encode()])
    _refused_at(vault, operator, path, 5)
    _rewrite(path, [genuine[0], genuine[1].replace(b"biologist:1", b"biologist:9"),
                    *genuine[2:]])
    _refused_at(vault, operator, path, 2)  # an altered line
    _rewrite(path, [b'{"chained": false}\n', *genuine])
    _refused_at(vault, operator, path, 1)
    other = tmp_path / "other.jsonl"
    FileCopy(other, KEY).write(_event(1), None)  # the right format, another key
    _refused_at(vault, operator, other, 1)


def test_removed_or_moved_journal_lines_are_refused(vault, operator, tmp_path) -> None:
    path = tmp_path / "journal.jsonl"
    _journal_of(vault, path)
    genuine = path.read_bytes().splitlines(keepends=True)
    _rewrite(path, [genuine[0], *genuine[2:]])
    _refused_at(vault, operator, path, 2)  # a line removed
    _rewrite(path, genuine[1:])
    _refused_at(vault, operator, path, 1)  # the first one removed
    _rewrite(path, [genuine[0], genuine[2], genuine[1], genuine[3]])
    _refused_at(vault, operator, path, 2)  # two lines swapped
    _rewrite(path, [*genuine, genuine[3]])
    _refused_at(vault, operator, path, 5)  # a line repeated
    _rewrite(path, genuine)
    assert vault.audit_log.recover(operator, path).recovered == 4


def test_the_journal_goes_on_across_restarts_and_a_cut_line(vault, operator, tmp_path) -> None:
    path = tmp_path / "journal.jsonl"
    _journal_of(vault, path, 2)
    _journal_of(vault, path, 1)  # another process, or the same after a restart
    with path.open("ab") as f:
        f.write(b'{"actor": "biologist:3", "n": 4')  # a crash in the middle of a write
    assert path.read_bytes().count(b"\n") == 3
    _journal_of(vault, path, 1)
    assert [d["n"] for d in _lines(path)] == [1, 2, 3, 4]
    assert vault.audit_log.recover(operator, path).recovered == 4


def test_a_journal_line_without_a_mac_at_its_end_stops_the_file_copy(tmp_path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"chained": false, "journal_id": "x"}\n')
    with pytest.raises(OSError):
        FileCopy(path, KEY).write(_event(1), None)
    assert path.read_text() == '{"chained": false, "journal_id": "x"}\n'


def test_recover_names_the_bad_journal_line(vault, settings, operator, tmp_path) -> None:
    from typer.testing import CliRunner

    from labvault.cli import app

    path = tmp_path / "journal.jsonl"
    _journal_of(vault, path, 3)
    genuine = path.read_bytes().splitlines(keepends=True)
    _rewrite(path, [genuine[0], genuine[2]])
    settings.save()
    vault.close()
    out = CliRunner().invoke(app, ["audit", "recover", "--data-dir", str(settings.data_dir),
                                   "--journal", str(path)])
    assert out.exit_code == 1
    assert "line 2" in " ".join(out.output.split())


# -- control characters ------------------------------------------------------------------------
INJECTED = "10.0.0.1\n<164>1 2026-03-02T08:30:00Z evil labvault 1 vault:patient:erase - forged"


def test_control_characters_never_reach_the_stored_columns_or_the_exports(vault, operator,
                                                                          backend) -> None:
    from labvault import Principal, Role

    nasty = Principal("biologist:mallory\r\x1b[2J", Role.BIOLOGIST, INJECTED,
                      "review\x00\x1e\x1f\x7f\tend")
    vault._event(nasty, "vault:patient:read", "allowed", note="a\nb\x85c\u2028d")
    with vault._records.engine.connect() as conn:
        row = conn.execute(text("SELECT actor, source, purpose FROM audit_event "
                                "WHERE actor LIKE 'biologist:mallory%'")).one()
    assert row.source == INJECTED.replace("\n", "?")
    assert row.actor == "biologist:mallory??[2J"
    assert row.purpose == "review?????end"
    assert vault.audit_log.verify(operator, None).checked == vault.audit_log.length() - 1

    n = vault.audit_log.length()
    syslog = list(vault.audit_log.export(operator, "syslog", hostname="lab-01"))
    jsonl = list(vault.audit_log.export(operator, "jsonl"))
    assert (len(syslog), len(jsonl)) == (n + 1, n + 2)  # one message per event, and each export's own
    control = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
    for line in syslog:
        assert control.search(line) is None
        assert len(line.splitlines()) == 1
        parse_rfc5424(line)
    for line in jsonl:
        assert re.search("[\x00-\x1f]", line) is None  # JSON escapes them
        json.loads(line)
    mine = next(parse_rfc5424(x) for x in syslog if "mallory" in x)
    assert mine["params"]["source"] == INJECTED.replace("\n", "?")
    assert json.loads(mine["params"]["detail"])["note"] == "a\nb\x85c\u2028d"


def test_the_syslog_writer_escapes_control_characters_itself() -> None:
    """Events recovered from a journal, or built elsewhere, may still hold them."""
    from datetime import UTC, datetime

    from labvault.audit.export import json_line, syslog_line
    from labvault.audit.log import LoggedEvent
    from labvault.audit.sink import AuditEvent

    event = AuditEvent(datetime(2026, 3, 2, tzinfo=UTC), "a\x00b", "biologist", INJECTED,
                       "p\u2028q", "vault:result:read\n<13>1 x", "allowed\r\n",
                       detail={"k": "\x85"})
    line = syslog_line(event, 7, b"\x01" * 32, b"\x02" * 32, hostname="lab-01")
    assert "\n" not in line and "\r" not in line and "\x00" not in line
    assert re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", line) is None
    got = parse_rfc5424(line)
    assert got["params"]["source"] == INJECTED.replace("\n", "\\u000a")
    assert got["params"]["actor"] == "a\\u0000b" and got["params"]["purpose"] == "p\\u2028q"
    assert got["msg"] == "vault:result:read\\u000a<13>1 x allowed\\u000d\\u000a"
    out = json_line(LoggedEvent(7, event, b"\x01" * 32, b"\x02" * 32))
    assert re.search("[\x00-\x1f]", out) is None
    assert json.loads(out)["source"] == INJECTED
