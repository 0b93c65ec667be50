"""``labvault serve``: the API under uvicorn.

It refuses to listen on anything but a loopback address without TLS unless told explicitly
(behind a TLS-terminating proxy on the same host, say), and it never runs without the vault's
audit: the app is built on the vault, and the vault cannot be opened without it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from labvault.api.app import ApiConfig, create_app
from labvault.cli_support import DataDir, err, fail, passphrase_for
from labvault.config import Settings, default_data_dir
from labvault.errors import ConfigurationError, LabvaultError
from labvault.vault import Vault


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, cert: Path | None, key: Path | None, insecure: bool) -> bool:
    """Whether TLS is on; raises `ConfigurationError` for a setting that would expose data."""
    if (cert is None) != (key is None):
        raise ConfigurationError("give both --tls-cert and --tls-key, or neither")
    tls = cert is not None
    if not tls and not is_loopback(host) and not insecure:
        raise ConfigurationError(
            f"refusing to listen on {host} without TLS: give --tls-cert and --tls-key, or "
            "--insecure-bind-without-tls when a TLS proxy on this host fronts the API")
    for path in (cert, key):
        if path is not None and not path.is_file():
            raise ConfigurationError(f"no such file: {path}")
    return tls


def serve(
    data_dir: DataDir = default_data_dir(),  # noqa: B008 - typer reads the default
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8443,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate (chain).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key.")] = None,
    insecure_bind_without_tls: Annotated[bool, typer.Option(
        help="Allow a non-loopback address without TLS (a TLS proxy must front it).")] = False,
    enable_docs: Annotated[bool, typer.Option(
        help="Publish the OpenAPI document and the interactive docs.")] = False,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="An origin allowed to call the API from a browser (repeatable).")] = None,
    access_log: Annotated[bool, typer.Option(help="uvicorn's access log (paths only).")] = False,
    trusted_proxy: Annotated[list[str] | None, typer.Option(
        help="Address of a reverse proxy whose X-Forwarded-For names the client (repeatable). "
             "Without it every client behind a proxy shares one address for throttling and "
             "the audit.")] = None,
) -> None:
    """Serve the HTTP API (uvicorn)."""
    import uvicorn

    try:
        tls = check_bind(host, tls_cert, tls_key, insecure_bind_without_tls)
        settings = Settings.load(data_dir)
        vault = Vault.open(settings, passphrase=passphrase_for(settings))
    except LabvaultError as exc:
        raise fail(exc) from None
    app = create_app(vault, ApiConfig(docs=enable_docs, cors_origins=tuple(cors_origin or ()),
                                      tls=tls))
    scheme = "https" if tls else "http"
    err.print(f"labvault API on {scheme}://{host}:{port}")
    try:
        uvicorn.run(app, host=host, port=port, ssl_certfile=str(tls_cert) if tls_cert else None,
                    ssl_keyfile=str(tls_key) if tls_key else None, server_header=False,
                    proxy_headers=bool(trusted_proxy),
                    forwarded_allow_ips=list(trusted_proxy) if trusted_proxy else None,
                    access_log=access_log, log_level="info")
    finally:
        vault.close()
