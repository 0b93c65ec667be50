"""``labvault serve``: the API under uvicorn.

It refuses to listen on anything but a loopback address without TLS unless told explicitly
(behind a TLS-terminating proxy on the same host, say), and it never runs without the vault's
audit: the app is built on the vault, and the vault cannot be opened without it. Nor does it
run without detection: the watcher observes every event the API appends (``watch.toml`` in the
data directory configures it; an error there stops the start), and escalation runs every ten
seconds. With several worker processes, run `labvault watch` beside them as well. Breach
response runs beside it (``breach.toml``): the public exposure checks' lookups, and the
delivery of queued notices every thirty seconds.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated

import typer

from labvault.breach.config import BreachConfig
from labvault.breach.exposure import exposure_desk
from labvault.breach.notices import Outbox
from labvault.cli_support import DataDir, err, fail, passphrase_for
from labvault.clock import SystemClock
from labvault.config import Settings, default_data_dir
from labvault.errors import ConfigurationError, LabvaultError
from labvault.periodic import Periodic
from labvault.retention_commands import start_retention_schedule
from labvault.vault import Vault
from labvault.watch.channels import channels_from_config
from labvault.watch.config import WatchConfig

log = logging.getLogger("labvault.watch")
TICK_SECONDS = 10.0
DELIVERY_SECONDS = 30.0


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


def _log_to_stderr() -> None:
    """labvault's own warnings (alerts: ids only; audit copy failures) beside uvicorn's log."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("labvault")
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


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
    _log_to_stderr()
    try:
        ticker = start_watching(vault, data_dir)
    except LabvaultError as exc:
        vault.close()
        raise fail(exc) from None
    try:
        breach_config, jobs = start_breach_response(vault, data_dir)
    except LabvaultError as exc:
        ticker.stop()
        vault.watch.stop()
        vault.close()
        raise fail(exc) from None
    from labvault.api.app import ApiConfig, create_app  # the web framework: only to serve

    app = create_app(vault, ApiConfig(docs=enable_docs, cors_origins=tuple(cors_origin or ()),
                                      tls=tls))
    app.state.breach_config = breach_config
    scheme = "https" if tls else "http"
    err.print(f"labvault API on {scheme}://{host}:{port}")
    try:
        uvicorn.run(app, host=host, port=port, ssl_certfile=str(tls_cert) if tls_cert else None,
                    ssl_keyfile=str(tls_key) if tls_key else None, server_header=False,
                    proxy_headers=bool(trusted_proxy),
                    forwarded_allow_ips=list(trusted_proxy) if trusted_proxy else None,
                    access_log=access_log, log_level="info")
    finally:
        for job in jobs:
            job.stop()
        ticker.stop()
        vault.watch.stop()
        vault.close()


def start_breach_response(vault: Vault, data_dir: Path) -> tuple[BreachConfig, list[Periodic]]:
    """``breach.toml`` (an error there stops the start), the daily retention run, the exposure
    checks' lookups and the delivery of queued notices. Without the settings a message needs,
    the public exposure check answers 503 to everyone and notices wait in the queue; `serve`
    says so."""
    config = BreachConfig.load(data_dir)
    missing = config.missing_for_notices()
    if missing:
        log.warning("breach.toml lacks %s: no notice can be sent and the public exposure check "
                    "is closed", ", ".join(missing))
    jobs = [start_retention_schedule(vault, config, SystemClock()),
            exposure_desk(vault, config).start()]
    if not missing:
        outbox = Outbox(vault, config)
        jobs.append(Periodic("notice delivery", DELIVERY_SECONDS, outbox.deliver_due).start())
    return config, jobs


def start_watching(vault: Vault, data_dir: Path) -> Periodic:
    """In-process detection, which `serve` cannot run without: the watcher on every audit event
    the API appends, warmed up on the log's recent history, and the escalation ticker. A
    configuration error (``watch.toml``, a channel's secret) raises `ConfigurationError`."""
    config = WatchConfig.load(data_dir)
    channels = channels_from_config(config["channels"], clock=SystemClock())
    watcher = vault.watch.start(config, channels=channels)
    try:
        watcher.warm_up()
        notifier = watcher.notifier
        return Periodic("alert escalation", TICK_SECONDS,
                        notifier.tick if notifier is not None else lambda: None).start()
    except BaseException:
        vault.watch.stop()
        raise
