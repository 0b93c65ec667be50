"""Thresholds of the detection rules, alert routing and escalation: ``watch.toml``.

The file lives in the data directory and is optional: every value has a default chosen for a
laboratory of a few sites and some dozens of staff (the simulator's normal workload raises no
alert above the review queue with them). A value given in the file replaces the default; an
unknown section or key, or a value of the wrong type, is refused naming it — a typo must not
silently leave a rule at its default. docs/watch.md explains each value.

Secrets (SMTP password, webhook key) are never in the file: a channel names the environment
variable that holds them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labvault.config_file import merge, read_toml

WATCH_FILE = "watch.toml"

# Distinct patients read (identity, record or export) per actor and window, by role.
_VOLUME = {
    "secretary": {"1m": 10, "10m": 40, "1h": 120, "1d": 400},
    "technician": {"1m": 10, "10m": 40, "1h": 150, "1d": 500},
    "biologist": {"1m": 12, "10m": 60, "1h": 200, "1d": 600},
    "service": {"1m": 60, "10m": 300, "1h": 1000, "1d": 5000},
    "patient": {"1m": 2, "10m": 2, "1h": 2, "1d": 2},
}

# Distinct patients whose results an actor enters or validates, per window, by role: an
# analyser gateway (service) writes in bursts, a biologist validates series.
_WRITE_VOLUME = {
    "technician": {"1m": 15, "10m": 80, "1h": 300, "1d": 1000},
    "biologist": {"1m": 30, "10m": 150, "1h": 500, "1d": 1500},
    "service": {"1m": 200, "10m": 1000, "1h": 4000, "1d": 30000},
}

DEFAULTS: dict[str, Any] = {
    "volume": {
        "limits": _VOLUME,
        "write_limits": _WRITE_VOLUME,
        # Severity of going over a limit: a short window means an extraction in progress.
        "severity": {"1m": "critical", "10m": "critical", "1h": "high", "1d": "high"},
    },
    "baseline": {
        "learning_days": 5,  # active days before the actor's own baseline is used
        "history_days": 28,
        "factor": 3.0,  # today over factor x the usual day (and over min_patients)
        "min_patients": 40,
    },
    "enumeration": {
        "window_minutes": 60,
        "nir_block_searches": 4,  # distinct NIRs searched in one birth block (sex, month, place)
        "nir_block_critical": 8,
        "shared_part_searches": 5,  # name searches sharing a name (or a birth date)
        "shared_part_critical": 10,
    },
    "misses": {
        "window_hours": 24,
        "min_misses": 10,
        "ratio": 0.6,
        "critical_misses": 30,
        # 0.6, not 0.8: an enumerator walking one serial either side of NIRs it knows misses
        # 2 searches in 3 (67 %) and was never locked (bench/detect.py, labvault simulate);
        # 30 misses a day at 60 % is still 20 times a secretary's day (about 15 % misses).
        "critical_ratio": 0.6,
        "id_probes": 5,  # reads of ids that do not exist, within the hour
    },
    "unused_searches": {"use_within_minutes": 30, "per_day": 20},
    "context": {
        "learning_days": 5,
        # Opening hours of the laboratory (local time): access outside them and outside the
        # actor's own usual hours is reported.
        "timezone": "Europe/Paris",
        "open_days": [0, 1, 2, 3, 4, 5],  # Monday = 0
        "open_from": "06:30",
        "open_until": "20:00",
        "concurrent_minutes": 15,
        "ipv4_prefix": 24,
        "ipv6_prefix": 64,
    },
    "unexplained": {"per_day": 10},
    "auth": {
        "window_minutes": 10,
        # Spraying is counted over the throttle's lock time: an attacker who waits out the
        # 30-minute block between tries stays in view.
        "spray_window_minutes": 30,
        "failed_logins": 5,
        "failed_logins_high": 10,
        "spray_accounts": 5,
        "mfa_failures": 3,
        "after_reset_minutes": 60,
    },
    # The public pages (labvault.watch.rules_public): per network, or per patient's NIR.
    "public": {
        "window_hours": 24,
        "exposure_misses": 10,  # exposure checks that found nobody or a wrong birth date
        "exposure_mismatches": 3,  # a patient's NIR with another birth date
        "birth_date_guesses": 3,  # one patient's NIR, distinct wrong dates, from anywhere
        "code_misses": 15,  # unknown codes from one address (its throttle: 10, then 1/30 min)
    },
    # Alerts that pile up on one account: distinct rules at medium or above within a day, or
    # high alerts within the hour, make a critical `correlated` alert (a thief who passes every
    # step-up with a stolen TOTP secret, a slow extraction that stays under every limit).
    "correlation": {"window_hours": 24, "distinct_rules": 3, "high_window_minutes": 60,
                    "highs": 3},
    "response": {"critical": "lock", "high": "step_up"},
    "alerting": {
        # Channels per severity (names of the [channels] entries); low goes to the review queue.
        "routes": {"critical": ["email", "webhook", "syslog"], "high": ["email", "webhook", "syslog"],
                   "medium": ["email", "syslog"], "low": []},
        # Minutes before an unacknowledged alert goes to the next contact of `escalation`.
        "ack_within_minutes": {"critical": 15, "high": 60, "medium": 480, "low": 0},
        "escalation": [],  # contacts, first to last (e-mail addresses)
    },
    "channels": {},
}


@dataclass(frozen=True)
class WatchConfig:
    doc: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> WatchConfig:
        return cls(merge(DEFAULTS, doc, WATCH_FILE,
                         ("channels", "volume.limits", "volume.write_limits")))

    @classmethod
    def load(cls, data_dir: Path) -> WatchConfig:
        doc = read_toml(data_dir / WATCH_FILE)
        return cls() if doc is None else cls.from_mapping(doc)

    def __getitem__(self, section: str) -> Any:
        return self.doc[section]


__all__ = ["DEFAULTS", "WATCH_FILE", "WatchConfig"]
