"""Breach response end to end, on the package's simulation: a biologist's stolen credentials
used from outside (the slow extraction) → the watcher's alert → `breach open` → a scope that
lists exactly the patients the attacker got, against the simulator's ground truth."""

from __future__ import annotations

import uuid
from pathlib import Path

from labvault import Settings, Vault
from labvault.access.principal import Principal, Role
from labvault.breach.scope import Selectors


def test_a_stolen_account_is_scoped_exactly(vault_copy: Path, attacks) -> None:
    theft = attacks["slow-extraction"]
    assert theft["first_alert"] is not None  # the watcher saw it
    vault = Vault.open(Settings.load(vault_copy))
    try:
        dpo = Principal(f"account:{uuid.uuid4()}", Role.DPO, "10.1.0.2", "incident response")
        alert = next(a for a in vault.watch.alerts(dpo) if a.actor == theft["actor"])
        incident = vault.breach.open_incident(dpo, detected_at=alert.raised_at,
                                              vector="stolen-credentials",
                                              description="compte biologiste volé")
        scope = vault.breach.scope(dpo, incident.id, Selectors(actor=theft["actor"],
                                                               source=theft["address"]))
        listed = {p["id"]: p for p in scope.document["patients"]}
        read = {pid for pid, p in listed.items() if set(p["categories"]) - {"membership"}}
        truth = set(theft["exposed_patient_ids"])
        assert truth and read == truth  # precision and recall: 100 %
        only_found = set(listed) - read
        assert only_found == set(theft["searched_patient_ids"]) - truth
        assert scope.document["totals"]["patients"] == len(listed)
    finally:
        vault.close()
