"""`labvault serve` as a real process on loopback: TLS with a given certificate, and the refusal
to listen on a non-loopback address without TLS."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from labvault import Settings, Vault
from labvault.api.serve import check_bind
from labvault.errors import ConfigurationError


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _labvault() -> list[str]:
    return [sys.executable, "-c", "from labvault.cli import app; app()"]


def test_serves_tls_on_loopback(tmp_path):
    data = tmp_path / "vault"
    Vault.init(Settings.embedded(data)).close()
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    ctx = ssl.create_default_context(cafile=str(cert))
    proc = subprocess.Popen([*_labvault(), "serve", "-d", str(data), "--port", str(port),
                             "--tls-cert", str(cert), "--tls-key", str(key)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/health", verify=ctx)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert httpx.get(f"https://127.0.0.1:{port}/patients/search", verify=ctx
                         ).status_code in (401, 405)
        assert httpx.post(f"https://127.0.0.1:{port}/patients/search", json={"nir": "1" * 15},
                          verify=ctx).status_code == 401
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health")  # no plain HTTP on a TLS port
        # No breach.toml: no answer could be sent, so the public exposure check is closed to
        # everyone alike, and the operator is told why.
        closed = httpx.post(f"https://127.0.0.1:{port}/exposure-check", verify=ctx,
                            json={"nir": "2 84 05 75 056 123 64", "birth_date": "1984-05-01"})
        assert closed.status_code == 503 and closed.json() == {"error": "not_configured"}
    finally:
        proc.terminate()
        proc.wait(10)
    assert "breach.toml lacks [controller] name" in proc.stderr.read().decode()


def test_refuses_public_bind_without_tls(tmp_path):
    data = tmp_path / "vault"
    Vault.init(Settings.embedded(data)).close()
    r = subprocess.run([*_labvault(), "serve", "-d", str(data), "--host", "0.0.0.0",
                        "--port", str(_free_port())], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "without TLS" in r.stderr


def test_bind_rules():
    assert check_bind("127.0.0.1", None, None, False) is False
    assert check_bind("::1", None, None, False) is False
    assert check_bind("10.0.0.5", None, None, True) is False
    with pytest.raises(ConfigurationError):
        check_bind("10.0.0.5", None, None, False)
    with pytest.raises(ConfigurationError):
        check_bind("127.0.0.1", Path("cert.pem"), None, False)
