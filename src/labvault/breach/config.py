"""Breach response settings: ``breach.toml`` in the data directory (optional).

``[controller]`` names the data controller and its data-protection officer (article 33(3)(b)
asks for the DPO's contact) and the regional health agency that receives the report of a
serious incident. ``[notices]`` governs messages to people: the address of the public
verification page printed in every message, the sender, the rate (messages per second, all
channels together) and the retry policy. ``[smtp]`` and ``[sms]`` are the two delivery
channels; a channel without a host (a URL) is not configured and its messages wait in the
queue. Secrets are never in the file: the channel names the environment variable that holds
them. ``[exposure]`` rate-limits the public exposure check, ``[retention]`` sets the terms
(docs/breach.md lists every value).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labvault.config_file import merge, read_toml
from labvault.errors import ConfigurationError

BREACH_FILE = "breach.toml"

DEFAULTS: dict[str, Any] = {
    "controller": {
        "name": "",  # the laboratory (data controller)
        "finess": "",  # its FINESS number (legal entity)
        "address": "",
        "dpo_name": "",
        "dpo_email": "",
        "dpo_phone": "",
        "regional_agency": "",  # e.g. "ARS Île-de-France"
        "regional_agency_email": "",
    },
    "notices": {
        "public_url": "",  # the verification page, printed in every message
        "sender_name": "",
        "sender_email": "",
        "per_second": 50.0,  # all channels together
        "max_attempts": 5,
        "retry_after_seconds": 300,  # doubled at each further attempt
    },
    "smtp": {
        "host": "",
        "port": 587,
        "starttls": True,
        "username": "",
        "password_env": "",  # the environment variable that holds the password
        "cafile": "",  # a CA bundle for a private relay; the system's by default
        "timeout_seconds": 10.0,
    },
    "sms": {
        "url": "",  # the gateway's HTTPS endpoint (docs/breach.md: request format)
        "token_env": "",  # the environment variable that holds the bearer token
        "sender": "",
        "timeout_seconds": 10.0,
    },
    "exposure": {
        "per_source_per_hour": 5,  # public exposure checks from one address (or /64)
        "per_identity_per_day": 3,  # answers sent to one person out of band
    },
    "retention": {
        # Years after which data is crypto-shredded, by category, counted from the exam
        # (labvault/vault/retention_policy.py: what each default rests on).
        "results_years": 10,
        "orders_years": 10,  # an order holding a result still kept is kept
        "comments_years": 10,
        "attachments_years": 10,
        "genetic_years": 30,  # genetic reports, their comments and files (CSP R. 1131-20)
        "inactive_patient_years": 10,  # no order nor result within it: the whole patient
        "keep_until_age": 28,  # nothing erased before this birthday; 0 disables
        "staging_days": 30,
    },
}


# Paces and waits that must be positive: a send must end, and within its lease.
POSITIVE = (("notices", "per_second"), ("notices", "max_attempts"),
            ("notices", "retry_after_seconds"), ("smtp", "timeout_seconds"),
            ("sms", "timeout_seconds"), ("exposure", "per_source_per_hour"),
            ("exposure", "per_identity_per_day"))


@dataclass(frozen=True)
class BreachConfig:
    doc: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> BreachConfig:
        merged = merge(DEFAULTS, doc, BREACH_FILE)
        for section, key in POSITIVE:
            if not merged[section][key] > 0:
                raise ConfigurationError(f"{BREACH_FILE}: [{section}] {key} must be more than 0")
        return cls(merged)

    @classmethod
    def load(cls, data_dir: Path) -> BreachConfig:
        doc = read_toml(data_dir / BREACH_FILE)
        return cls() if doc is None else cls.from_mapping(doc)

    def __getitem__(self, section: str) -> Any:
        return self.doc[section]

    def missing_for_notices(self) -> list[str]:
        """Settings every message to a person needs (who writes, where to check, whom to
        ask), that are not set."""
        c, n = self.doc["controller"], self.doc["notices"]
        return [key for key, value in (("[controller] name", c["name"]),
                                       ("[notices] public_url", n["public_url"]),
                                       ("[controller] dpo_email or dpo_phone",
                                        c["dpo_email"] or c["dpo_phone"])) if not value]


__all__ = ["BREACH_FILE", "DEFAULTS", "BreachConfig"]
