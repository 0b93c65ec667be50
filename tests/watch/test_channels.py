"""Alert channels against real local servers: SMTP with STARTTLS and AUTH (aiosmtpd), a webhook
receiver (http.server), syslog collectors over UDP and TCP; and building them from settings."""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import re
import socket
import traceback
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from channel_support import (
    SmtpRecorder,
    WebhookReceiver,
    free_port,
    read_octet_counted,
    smtp_server,
    tls_contexts,
)

from labvault.clock import FixedClock
from labvault.errors import ConfigurationError
from labvault.secret import Secret
from labvault.watch.alerts import Alert, Severity
from labvault.watch.channels import (
    DeliveryFailed,
    SignatureInvalid,
    SmtpChannel,
    SyslogChannel,
    WebhookChannel,
    channels_from_config,
    sign,
    verify_signature,
)

RAISED = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
SECRET = Secret(b"webhook-shared-secret-0123456789")
SMTP_PASSWORD = "correct horse battery staple"  # a test credential, nothing real


def sample_alert(severity: Severity = Severity.HIGH, **changes: object) -> Alert:
    actor = f"account:{uuid.uuid4()}"
    fields: dict[str, object] = dict(
        id=uuid.uuid4(), rule="bulk_read", severity=severity, actor=actor, raised_at=RAISED,
        explanation=f"{actor} read 240 patients in 10 minutes (usual for the role: 12)",
        evidence={"patients": 240, "window_minutes": 10, "baseline": 12},
        patient_ids=(uuid.uuid4(), uuid.uuid4()))
    fields.update(changes)
    return Alert(**fields)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(RAISED + timedelta(seconds=42))


@pytest.fixture
def tls(tmp_path: Path):
    return tls_contexts(tmp_path)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


# -- e-mail ---------------------------------------------------------------------------------------
def smtp(port: int, client_tls, clock, **kwargs) -> SmtpChannel:
    return SmtpChannel("127.0.0.1", port, "labvault@lab.example",
                       ("dpo@lab.example", "security@lab.example"), ssl_context=client_tls,
                       clock=clock, timeout=5, **kwargs)


def test_email_arrives_after_starttls_with_text_and_json(tls, clock) -> None:
    server_tls, client_tls = tls
    recorder, alert = SmtpRecorder(), sample_alert()
    with smtp_server(recorder, server_tls) as port:
        smtp(port, client_tls, clock).send(alert, None)
    [got] = recorder.messages
    assert got.tls and got.mail_from == "labvault@lab.example"
    assert got.rcpt_tos == ["dpo@lab.example", "security@lab.example"]
    msg = email.message_from_bytes(got.content, policy=email.policy.default)
    assert msg["Subject"].strip() == alert.subject  # folded after "Subject:": the parser keeps a space
    assert msg["Message-ID"].endswith("@lab.example>")
    assert msg["Date"].datetime == clock.now()
    text = msg.get_body(("plain",)).get_content()
    for expected in (alert.explanation, str(alert.id), f"labvault alerts ack {alert.id}", "HIGH",
                     "bulk_read", alert.actor, RAISED.isoformat(), '"patients": 240'):
        assert expected in text
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_content_type() == "application/json"
    assert attachment.get_filename() == f"alert-{alert.id}.json"
    assert json.loads(attachment.get_content()) == alert.as_dict()


def test_an_escalation_goes_only_to_the_contact(tls, clock) -> None:
    server_tls, client_tls = tls
    recorder = SmtpRecorder()
    with smtp_server(recorder, server_tls) as port:
        channel = smtp(port, client_tls, clock)
        channel.send(sample_alert(escalation_level=1), "oncall@lab.example")
        with pytest.raises(DeliveryFailed, match="ValueError"):  # no header injection
            channel.send(sample_alert(), "oncall@lab.example\r\nBcc: someone@elsewhere.example")
    [got] = recorder.messages
    assert got.rcpt_tos == ["oncall@lab.example"]
    assert email.message_from_bytes(got.content, policy=email.policy.default)["To"] == \
        "oncall@lab.example"


def test_a_server_without_starttls_is_refused_and_no_password_goes_out(tls, clock) -> None:
    _, client_tls = tls
    recorder = SmtpRecorder(password=SMTP_PASSWORD.encode())
    with smtp_server(recorder, None) as port:
        channel = smtp(port, client_tls, clock, username="alerts", password=Secret(SMTP_PASSWORD))
        with pytest.raises(DeliveryFailed, match="STARTTLS") as caught:
            channel.send(sample_alert(), None)
    assert recorder.messages == [] and recorder.logins == []
    assert caught.value.channel == "email"


def test_a_server_certificate_not_trusted_is_refused(tmp_path, clock) -> None:
    server_tls, _ = tls_contexts(tmp_path / "one")
    _, other_client = tls_contexts(tmp_path / "two")
    recorder = SmtpRecorder()
    with smtp_server(recorder, server_tls) as port, pytest.raises(DeliveryFailed, match="SSL"):
        smtp(port, other_client, clock).send(sample_alert(), None)
    assert recorder.messages == []


def test_auth_over_tls_right_and_wrong_password(tls, clock) -> None:
    server_tls, client_tls = tls
    recorder = SmtpRecorder(password=SMTP_PASSWORD.encode())
    with smtp_server(recorder, server_tls, auth=True) as port:
        smtp(port, client_tls, clock, username="alerts", password=Secret(SMTP_PASSWORD)
             ).send(sample_alert(), None)
        wrong = smtp(port, client_tls, clock, username="alerts", password=Secret("not-the-password"))
        with pytest.raises(DeliveryFailed, match="SMTPAuthenticationError") as caught:
            wrong.send(sample_alert(), None)
    assert len(recorder.messages) == 1 and recorder.messages[0].tls
    assert set(recorder.logins) == {b"alerts"}  # smtplib tries each mechanism offered
    shown = "".join(traceback.format_exception(caught.value)) + repr(wrong) + repr(vars(wrong))
    assert "not-the-password" not in shown and "(SMTP 535)" in str(caught.value)


def test_an_unreachable_server_is_a_delivery_failure(tls, clock) -> None:
    with pytest.raises(DeliveryFailed, match="ConnectionRefusedError"):
        smtp(free_port(), tls[1], clock).send(sample_alert(), None)


def test_plain_smtp_only_to_a_loopback_relay_and_never_with_auth(clock) -> None:
    recorder = SmtpRecorder()
    with smtp_server(recorder, None) as port:
        SmtpChannel("127.0.0.1", port, "labvault@lab.example", ("dpo@lab.example",),
                    starttls=False, clock=clock).send(sample_alert(), None)
    assert len(recorder.messages) == 1 and not recorder.messages[0].tls
    with pytest.raises(ValueError, match="starttls"):
        SmtpChannel("mail.lab.example", 25, "a@lab.example", ("b@lab.example",), starttls=False)
    with pytest.raises(ValueError, match="username"):
        SmtpChannel("127.0.0.1", 25, "a@lab.example", ("b@lab.example",), starttls=False,
                    username="alerts", password=Secret("x"))
    with pytest.raises(ValueError, match="recipients"):
        SmtpChannel("mail.lab.example", 587, "a@lab.example", ())


# -- webhook --------------------------------------------------------------------------------------
def webhook(url: str, clock: FixedClock, sleeps: list[float], **kwargs) -> WebhookChannel:
    kwargs.setdefault("jitter", False)
    return WebhookChannel(url, SECRET, clock=clock, sleep=sleeps.append, **kwargs)


def test_webhook_is_signed_and_retried_with_back_off_until_success(clock) -> None:
    script = [(503, {"Retry-After": "7"}), (500, {}), (429, {"Retry-After": "3"}), (502, {}),
              (200, {})]
    sleeps: list[float] = []
    alert = sample_alert()
    with WebhookReceiver(script) as receiver:
        webhook(receiver.url, clock, sleeps, attempts=6).send(alert, None)
    assert sleeps == [7, 2.0, 3, 8.0]  # Retry-After, 1*2**1, Retry-After, 1*2**3
    assert len(receiver.requests) == 5  # stopped at the first success
    assert len({r.headers["x-labvault-delivery"] for r in receiver.requests}) == 1
    for request in receiver.requests:
        h = request.headers
        assert request.body == alert.body() and h["content-type"] == "application/json"
        assert h["x-labvault-alert"] == str(alert.id)
        assert h["x-labvault-timestamp"] == str(int(clock.now().timestamp()))
        assert re.fullmatch("sha256=[0-9a-f]{64}", h["x-labvault-signature"])
        verify_signature(SECRET, h["x-labvault-timestamp"], request.body, h["x-labvault-signature"],
                         now=clock.now())
    assert SECRET.reveal() not in b"".join(r.body for r in receiver.requests)


def test_a_signature_fails_with_another_secret_body_or_an_old_timestamp(clock) -> None:
    body, now = sample_alert().body(), clock.now()
    stamp = str(int(now.timestamp()))
    good = sign(SECRET, stamp, body)
    verify_signature(SECRET, stamp, body, good, now=now + timedelta(seconds=300))
    bad = [(Secret(b"another-secret-of-32-bytes......"), stamp, body, good, now),
           (SECRET, stamp, body.replace(b"240", b"241"), good, now),
           (SECRET, stamp, body, good, now + timedelta(seconds=301)),  # a replay, 5 min later
           (SECRET, stamp, body, good, now - timedelta(seconds=301)),
           (SECRET, str(int(stamp) + 1), body, good, now),
           (SECRET, stamp, body, good.replace("sha256=", "sha1="), now),
           (SECRET, stamp, body, "sha256=zz", now), (SECRET, stamp, body, "", now),
           (SECRET, "-1", body, good, now), (SECRET, "1e9", body, good, now)]
    for secret, ts, data, header, at in bad:
        with pytest.raises(SignatureInvalid):
            verify_signature(secret, ts, data, header, now=at)


def test_a_retry_after_is_capped_and_a_fresh_timestamp_signs_each_attempt(clock) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    with WebhookReceiver([(503, {"Retry-After": "3600"}), (429, {"Retry-After": "40"}),
                          (500, {"Retry-After": "5"}), (503, {"Retry-After": "Fri, 14 Mar 2025"}),
                          (200, {})]) as receiver:
        WebhookChannel(receiver.url, SECRET, clock=clock, sleep=sleep, max_delay=60, jitter=False
                       ).send(sample_alert(), None)
    assert sleeps == [60, 40, 4.0, 8.0]  # capped; honoured; ignored on a 500; not in seconds
    stamps = [int(r.headers["x-labvault-timestamp"]) for r in receiver.requests]
    assert [b - a for a, b in itertools.pairwise(stamps)] == [60, 40, 4, 8]


@pytest.mark.parametrize("status", [400, 401, 404, 302])
def test_a_client_error_or_redirect_is_not_retried(clock, status: int) -> None:
    sleeps: list[float] = []
    with WebhookReceiver([(status, {"Location": "https://elsewhere.example/"})]) as receiver, \
            pytest.raises(DeliveryFailed, match=f"HTTP {status}, not retried"):
        webhook(receiver.url, clock, sleeps).send(sample_alert(), None)
    assert len(receiver.requests) == 1 and sleeps == []


def test_after_all_attempts_fail_delivery_fails(clock) -> None:
    sleeps: list[float] = []
    with WebhookReceiver([(500, {})] * 3) as receiver, \
            pytest.raises(DeliveryFailed, match="3 attempts, last: HTTP 500"):
        webhook(receiver.url, clock, sleeps, attempts=3).send(sample_alert(), None)
    assert len(receiver.requests) == 3 and sleeps == [1.0, 2.0]


def test_connection_errors_and_timeouts_are_retried(clock) -> None:
    sleeps: list[float] = []
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(DeliveryFailed, match="2 attempts, last: ConnectError"):
        webhook(url, clock, sleeps, attempts=2, base_delay=0.5).send(sample_alert(), None)
    assert sleeps == [0.5]
    sleeps.clear()
    with WebhookReceiver() as receiver:
        receiver.hold.set()  # the receiver answers nothing until the test ends
        with pytest.raises(DeliveryFailed, match="2 attempts, last: ReadTimeout"):
            webhook(receiver.url, clock, sleeps, attempts=2, timeout=0.2).send(sample_alert(), None)
    assert sleeps == [1.0] and len(receiver.requests) == 2


def test_jitter_stays_within_twenty_percent_and_under_the_cap(clock) -> None:
    channel = WebhookChannel("https://hooks.lab.example/x", SECRET, clock=clock, max_delay=10)
    for attempt in range(6):
        wait = channel.delay(attempt)
        assert min(10, 0.8 * 2**attempt) <= wait <= min(10, 1.2 * 2**attempt)


def test_only_https_or_loopback_http_and_the_secret_never_shows(clock) -> None:
    for url in ("https://hooks.lab.example/a", "http://127.0.0.1:8080/a", "http://localhost/a",
                "http://[::1]:9/a", "http://127.8.0.1/a"):
        WebhookChannel(url, SECRET, clock=clock)
    for url in ("http://hooks.lab.example/a", "http://10.0.0.1/a", "ftp://127.0.0.1/a",
                "https://user:pw@hooks.lab.example/a", "https:///a", "hooks.lab.example"):
        with pytest.raises(ValueError, match="url"):
            WebhookChannel(url, SECRET, clock=clock)
    with pytest.raises(ValueError, match="secret"):
        WebhookChannel("https://hooks.lab.example/a", Secret(b"short"), clock=clock)
    channel = WebhookChannel("https://hooks.lab.example/T0K3N/path", SECRET, clock=clock)
    assert "webhook-shared-secret" not in repr(channel) and "T0K3N" not in repr(channel)
    assert "hooks.lab.example" in repr(channel)


# -- syslog ---------------------------------------------------------------------------------------
SYSLOG = re.compile(r"<(\d+)>1 (\S+) (\S+) (\S+) (\d+) (\S+) (\[(?:[^\]\\]|\\.)*\]) (.*)", re.S)
SD_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(line: str) -> dict[str, object]:
    m = SYSLOG.fullmatch(line)
    assert m is not None, line
    pri, ts, host, app, _pid, msgid, sd, msg = m.groups()
    assert sd.startswith("[alert@32473 ")
    return {"pri": int(pri), "ts": ts, "host": host, "app": app, "msgid": msgid,
            "sd": dict(SD_PARAM.findall(sd)), "msg": msg}


@pytest.mark.parametrize(("severity", "level"), [(Severity.CRITICAL, 2), (Severity.HIGH, 3),
                                                 (Severity.MEDIUM, 4), (Severity.LOW, 5)])
def test_syslog_over_udp(clock, severity: Severity, level: int) -> None:
    alert = sample_alert(severity)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)
        channel = SyslogChannel("127.0.0.1", listener.getsockname()[1], "udp", clock=clock,
                                hostname="lab-01")
        channel.send(alert, "oncall@lab.example")
        channel.close()
        datagram, _ = listener.recvfrom(65535)
    got = parse(datagram.decode("utf-8"))
    assert got["pri"] == 10 * 8 + level
    assert (got["ts"], got["host"], got["app"], got["msgid"]) == \
        ("2025-03-14T09:27:35.000000Z", "lab-01", "labvault", "labvault-alert")
    assert got["sd"] == {"id": str(alert.id), "rule": "bulk_read", "severity": str(severity),
                         "actor": alert.actor, "raised_at": "2025-03-14T09:26:53.000000Z"}
    assert got["msg"] == alert.explanation
    assert "oncall" not in datagram.decode()  # the escalation contact is no syslog business


def test_syslog_over_tcp_is_octet_counted_and_escaped(clock) -> None:
    alert = sample_alert(rule='odd"rule]\\', explanation="line one\nline two")
    with socket.create_server(("127.0.0.1", 0)) as server:
        channel = SyslogChannel("127.0.0.1", server.getsockname()[1], "tcp", clock=clock,
                                hostname="lab 01")
        channel.send(alert, None)
        conn, _ = server.accept()
        with conn:
            line = read_octet_counted(conn)
        channel.close()
    got = parse(line)
    assert "\n" not in line and got["msg"] == "line one\\u000aline two"
    assert got["sd"]["rule"] == 'odd\\"rule\\]\\\\' and got["host"] == "lab_01"


def test_syslog_to_nobody_over_tcp_is_a_delivery_failure(clock) -> None:
    channel = SyslogChannel("127.0.0.1", free_port(), "tcp", clock=clock)
    with pytest.raises(DeliveryFailed, match="syslog"):
        channel.send(sample_alert(), None)


# -- settings -------------------------------------------------------------------------------------
CONFIG = {
    "email": {"host": "mail.lab.example", "port": 587, "sender": "labvault@lab.example",
              "recipients": ["dpo@lab.example"], "starttls": True, "username": "alerts",
              "password_env": "LABVAULT_SMTP_PASSWORD"},
    "webhook": {"url": "https://hooks.lab.example/labvault", "secret_env": "LABVAULT_WEBHOOK_SECRET"},
    "syslog": {"target": "syslog+udp://127.0.0.1:514"},
}


def test_channels_from_config_reads_secrets_from_the_environment(monkeypatch, clock) -> None:
    monkeypatch.setenv("LABVAULT_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("LABVAULT_WEBHOOK_SECRET", SECRET.reveal().decode())
    channels = channels_from_config(CONFIG, clock=clock)
    assert {k: type(v) for k, v in channels.items()} == \
        {"email": SmtpChannel, "webhook": WebhookChannel, "syslog": SyslogChannel}
    assert all(channel.name == name for name, channel in channels.items())
    email_channel, hook = channels["email"], channels["webhook"]
    assert isinstance(email_channel, SmtpChannel) and isinstance(hook, WebhookChannel)
    assert email_channel._password == Secret(SMTP_PASSWORD) and hook._secret == SECRET
    assert SMTP_PASSWORD not in repr(channels) and "webhook-shared" not in repr(channels)
    sender = channels["syslog"].sender  # type: ignore[attr-defined]
    assert (sender.host, sender.port, sender.transport) == ("127.0.0.1", 514, "udp")


def test_a_missing_secret_variable_is_named_not_its_value(monkeypatch, clock) -> None:
    monkeypatch.setenv("LABVAULT_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.delenv("LABVAULT_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="LABVAULT_WEBHOOK_SECRET") as caught:
        channels_from_config(CONFIG, clock=clock)
    assert "webhook" in str(caught.value) and SMTP_PASSWORD not in str(caught.value)


@pytest.mark.parametrize(("doc", "named"), [
    ({"email": {**CONFIG["email"], "password": "in-the-file"}}, "email: password"),
    ({"email": {k: v for k, v in CONFIG["email"].items() if k != "host"}}, "email: host"),
    ({"email": {**CONFIG["email"], "recipients": []}}, "email: recipients"),
    ({"email": {**CONFIG["email"], "port": "587"}}, "email: port"),
    ({"webhook": {**CONFIG["webhook"], "url": "http://hooks.lab.example/x"}}, "webhook: .*url"),
    ({"webhook": {"url": "https://hooks.lab.example/x"}}, "webhook: secret_env"),
    ({"syslog": {"target": "syslog+http://h:1"}}, "syslog: .*target"),
    ({"pager": {}}, "pager"),
])
def test_bad_settings_name_the_channel_and_field(monkeypatch, clock, doc, named: str) -> None:
    monkeypatch.setenv("LABVAULT_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("LABVAULT_WEBHOOK_SECRET", SECRET.reveal().decode())
    with pytest.raises(ConfigurationError, match=named) as caught:
        channels_from_config(doc, clock=clock)
    assert "in-the-file" not in str(caught.value) and SMTP_PASSWORD not in str(caught.value)
