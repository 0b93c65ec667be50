"""Supervision: detection rules over the audit stream, alerts, escalation, automatic response.

The vault's audit trail hands each event, once durable, to the `Watcher` (in process, started
by `vault.watch.start()` and by ``labvault serve``); ``labvault watch`` runs the same watcher
over the log for deployments with several API processes. See docs/watch.md.
"""

import logging

from labvault.watch.alerts import Alert, Finding, Severity
from labvault.watch.config import WatchConfig
from labvault.watch.engine import Watcher

# Alerts are logged for the server's log; a program that configures no logging does not get
# them on its standard error (the alert table, the channels and `labvault alerts` have them).
logging.getLogger("labvault.watch").addHandler(logging.NullHandler())

__all__ = ["Alert", "Finding", "Severity", "WatchConfig", "Watcher"]
