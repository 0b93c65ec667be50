"""The database tables. Personal columns are `SealedBytes`: they accept only `Sealed` values.

Clear columns (not personal) are, exactly:

- every table: ``id`` (random UUID), ``created_at`` (when the row was written);
- ``patient``: ``erased_at``, ``nir_bidx`` and ``name_birth_bidx`` (keyed HMACs, not values);
- ``lab_order``: ``patient_id``, ``position``; ``result``: ``patient_id``, ``order_id``,
  ``position`` (the record's order as received);
  ``comment``: ``patient_id``, ``order_id``, ``result_id``, ``position``;
- ``audit_event``: the event's time, actor id, role, source address, purpose, action tag,
  outcome and internal patient ids — never a personal value;
- key store ``data_key``: ``patient_id``, ``kek_version``, ``dek_version``, ``created_at`` and the
  wrapped key (ciphertext under the master key).

Everything else is AES-256-GCM ciphertext.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
)

from labvault.crypto.envelope import Sealed

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class SealedBytes(TypeDecorator):
    """A personal column: writes only `Sealed`, reads back `Sealed`. A str or bytes is refused."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, Sealed):
            raise TypeError("a personal column accepts only Sealed values")
        return value.blob

    def process_result_value(self, value, dialect):
        return None if value is None else Sealed(bytes(value))


def _ts(name: str, nullable: bool = False) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _sealed(*names: str) -> list[Column]:
    return [Column(n, SealedBytes(), nullable=True) for n in names]


metadata = MetaData(naming_convention=NAMING_CONVENTION)

PATIENT_SEALED = (
    "last_name", "birth_name", "first_names", "birth_date", "sex", "nir", "ins", "birth_place",
    "address", "phone", "email", "mandatory_insurance", "complementary_insurance",
)
ORDER_SEALED = ("lab_finess", "requested_at", "sampled_at", "prescriber", "lab_file_number")
RESULT_SEALED = (
    "code_system", "code", "label", "value", "unit", "reference_range", "abnormal_flag",
    "status", "observed_at",
)
COMMENT_SEALED = ("text",)

patient = Table(
    "patient", metadata,
    Column("id", Uuid, primary_key=True),
    _ts("created_at"),
    _ts("erased_at", nullable=True),
    Column("nir_bidx", LargeBinary(16), nullable=True, index=True),
    Column("name_birth_bidx", LargeBinary(16), nullable=True, index=True),
    *_sealed(*PATIENT_SEALED),
)

lab_order = Table(
    "lab_order", metadata,
    Column("id", Uuid, primary_key=True),
    Column("patient_id", Uuid, ForeignKey("patient.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("position", Integer, nullable=False),
    _ts("created_at"),
    *_sealed(*ORDER_SEALED),
)

result = Table(
    "result", metadata,
    Column("id", Uuid, primary_key=True),
    Column("order_id", Uuid, ForeignKey("lab_order.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("patient_id", Uuid, ForeignKey("patient.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("position", Integer, nullable=False),
    _ts("created_at"),
    *_sealed(*RESULT_SEALED),
)

comment = Table(
    "comment", metadata,
    Column("id", Uuid, primary_key=True),
    Column("patient_id", Uuid, ForeignKey("patient.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("order_id", Uuid, ForeignKey("lab_order.id", ondelete="CASCADE"), nullable=False),
    Column("result_id", Uuid, ForeignKey("result.id", ondelete="CASCADE"), nullable=True),
    Column("position", Integer, nullable=False),
    _ts("created_at"),
    *_sealed(*COMMENT_SEALED),
)

audit_event = Table(
    "audit_event", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _ts("at"),
    Column("actor", String(200), nullable=False),
    Column("role", String(50), nullable=False),
    Column("source", String(200), nullable=False),
    Column("purpose", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("patient_ids", Text, nullable=False),
    Column("detail", Text, nullable=True),
)
Index("ix_audit_event_at", audit_event.c.at)

# The key store lives in a database of its own: a copy of the data database never carries
# the wrapped data keys, so destroying a key here makes every earlier copy unreadable.
keystore_metadata = MetaData(naming_convention=NAMING_CONVENTION)

data_key = Table(
    "data_key", keystore_metadata,
    Column("patient_id", Uuid, primary_key=True),
    Column("kek_version", Integer, nullable=False, index=True),
    Column("dek_version", Integer, nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    _ts("created_at"),
)
