"""Orders and results entered for a patient already in the vault, and their validation.

`ResultDesk` (``vault.results``) is a door of the vault like the others: every call checks
the principal's permission on that patient (deny by default, refusals audited), appends its
audit event before any row is written, and seals with the patient's own data key.

- `add_order` appends one order (with its results and comments) after the patient's
  existing ones: positions continue from the stored maxima (`RecordStore.next_positions`, the
  importer's query) and the rows are sealed by `Vault._seal_orders`, the same code that stores
  imported and registered records, so the order reads back through `get_record` like any
  other, and its lab site becomes a care link (``patient_site``). Entering results is
  ``vault:result:write``; results entered as final or corrected are a biological validation
  and also need ``vault:result:validate``: a technician's or an analyser's results stay
  preliminary until a biologist validates them. The patient's identity is never opened: only
  their data key is unwrapped.
- `validate_order` turns the preliminary results of one order final by re-sealing the
  ``status`` column alone, under the same key and the same record reference (so the value still
  opens only in its own row and column). The statuses of that order are opened before the audit
  event, so that the event can say how many results the call validates; nothing is written or
  returned before the event is written.

Two writers appending to the same patient at the same instant may read the same positions:
both orders are stored and read back (each row's reference names its own id), in an order
between them that is not defined. The importer's cache of positions for the patient is
dropped after each append.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import TYPE_CHECKING

from labvault import codec
from labvault.access.permissions import Permission
from labvault.access.principal import Principal
from labvault.domain.records import Order, Patient, PatientRecord, ResultStatus, Sex
from labvault.domain.validation import validate_record
from labvault.errors import NotFound
from labvault.store.records import RowBatch
from labvault.vault.core import _result_ref

if TYPE_CHECKING:
    from labvault.crypto.envelope import FieldCipher
    from labvault.vault.core import Vault

P = Permission
ORDER_CATEGORIES = ("orders", "results", "comments")
# Statuses that state a biological validation: entering them is validating.
VALIDATED = frozenset({ResultStatus.FINAL, ResultStatus.CORRECTED})


def check_order(order: Order) -> None:
    """The French identifier checks of `validate_record` (FINESS, RPPS, ADELI) applied to one
    order; raises `InvalidRecord` naming the field. The patient beside it is a stand-in that
    carries no identifier, so only the order is checked."""
    stand_in = Patient(last_name="-", first_names="-", birth_date=date(1900, 1, 1),
                       sex=Sex.UNKNOWN)
    validate_record(PatientRecord(stand_in, (order,)))


class ResultDesk:
    """Entering orders and results for stored patients, and validating them."""

    def __init__(self, vault: Vault) -> None:
        self._v = vault

    def __repr__(self) -> str:
        return "ResultDesk()"

    def add_order(self, principal: Principal, patient_id: uuid.UUID, order: Order) -> uuid.UUID:
        """Append an order with its results and comments to a stored patient; returns its id."""
        v = self._v
        v._authorize(principal, P.RESULT_WRITE, [patient_id])
        if any(r.status in VALIDATED for r in order.results):
            v._authorize(principal, P.RESULT_VALIDATE, [patient_id])
        check_order(order)
        if not v._records.live([patient_id]):
            v._event(principal, P.RESULT_WRITE, "not_found", [patient_id])
            raise NotFound("patient", patient_id)
        v._event(principal, P.RESULT_WRITE, "allowed", [patient_id], ORDER_CATEGORIES,
                 results=len(order.results), order=str(order.id))
        cipher = self._cipher(patient_id)
        positions = v._records.next_positions([patient_id])[patient_id]
        batch = RowBatch()
        v._seal_orders(patient_id, [order], cipher, v._clock.now(), batch, positions)
        try:
            v._records.insert(batch)
        finally:
            v.imports.forget(patient_id)  # its cached positions are behind now
        return order.id

    def validate_order(self, principal: Principal, patient_id: uuid.UUID,
                       order_id: uuid.UUID) -> int:
        """Make the preliminary results of one of the patient's orders final; returns how many
        were validated (0 when there were none left)."""
        v = self._v
        v._authorize(principal, P.RESULT_VALIDATE, [patient_id])
        found = v._records.order_results(order_id)
        if found is None or found[0] != patient_id:
            v._event(principal, P.RESULT_VALIDATE, "not_found", [patient_id],
                     order=str(order_id))
            raise NotFound("order", order_id)
        cipher = self._cipher(patient_id)
        encode, decode = codec.RESULT["status"]
        pending = []
        for r in found[1]:
            ref = _result_ref(r.id, r.patient_id, r.order_id, r.position)
            if (r.status is not None and
                    decode(cipher.open("result", "status", ref, r.status))
                    is ResultStatus.PRELIMINARY):
                pending.append((r.id, ref))
        v._event(principal, P.RESULT_VALIDATE, "allowed", [patient_id], ("results",),
                 order=str(order_id), validated=len(pending))
        final = encode(ResultStatus.FINAL)
        v._records.set_result_status({rid: cipher.seal("result", "status", ref, final)
                                      for rid, ref in pending})
        return len(pending)

    def _cipher(self, patient_id: uuid.UUID) -> FieldCipher:
        """The patient's data key, unwrapped (raises `KeyUnavailable` once erased)."""
        v = self._v
        return v._cipher_for(patient_id, v._keystore.get(patient_id))


__all__ = ["ResultDesk", "check_order"]
