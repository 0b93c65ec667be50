"""Real local servers for the alert-channel tests: a TLS certificate made on the spot, an SMTP
server (aiosmtpd) that records what it received and whether the session was under TLS, a
scriptable HTTP receiver, and a TCP syslog collector reading octet-counted frames."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def free_port() -> int:
    """A TCP port nobody listens on right now (aiosmtpd's controller wants a fixed port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A test CA and a server certificate for 127.0.0.1 and localhost: (server, client) contexts,
    the client trusting that CA only. A CA and a leaf rather than one self-signed leaf, so that
    strict X.509 checking (Python 3.13's default) accepts the chain too."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "labvault test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem, cert_pem, key_pem = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_pem, key_pem)
    client = ssl.create_default_context(cafile=str(ca_pem))
    return server, client


@dataclass
class Received:
    tls: bool
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class SmtpRecorder:
    """aiosmtpd handler and authenticator: keeps each message and every login tried."""

    login: bytes = b"alerts"
    password: bytes = b""
    messages: list[Received] = field(default_factory=list)
    logins: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(Received(session.ssl is not None, envelope.mail_from,
                                      list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == self.login
              and auth_data.password == self.password)
        self.logins.append(auth_data.login if isinstance(auth_data, LoginPassword) else b"")
        return AuthResult(success=ok, handled=False)  # the server answers 535 itself


@contextlib.contextmanager
def smtp_server(recorder: SmtpRecorder, tls: ssl.SSLContext | None, *, auth: bool = False,
                ) -> Iterator[int]:
    """An SMTP server on 127.0.0.1 (STARTTLS offered when ``tls`` is given): yields its port."""
    port = free_port()
    kwargs: dict[str, Any] = {"tls_context": tls, "require_starttls": tls is not None,
                              "auth_require_tls": True}
    if auth:
        kwargs.update(authenticator=recorder, auth_required=True)
    controller = Controller(recorder, hostname="127.0.0.1", port=port, server_hostname="localhost",
                            **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 answering each POST with the next scripted (status, headers)
    (200 once the script is spent, or holding the answer while ``hold`` is set)."""

    def __init__(self, script: list[tuple[int, dict[str, str]]] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[Request] = []
        self.hold = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(Request({k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.hold.is_set():
                    receiver.release.wait(5)
                status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/labvault"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def read_octet_counted(conn: socket.socket) -> str:
    """One RFC 6587 frame (``LEN SP MSG``) from a TCP syslog connection."""
    conn.settimeout(5)
    buf = b""
    while b" " not in buf:
        buf += conn.recv(4096)
    length, _, rest = buf.partition(b" ")
    while len(rest) < int(length):
        rest += conn.recv(4096)
    return rest[:int(length)].decode("utf-8")
