"""The database tables. Personal columns are `SealedBytes`: they accept only `Sealed` values.

Clear columns (not personal) are, exactly:

- every table: ``id`` (random UUID), ``created_at`` (when the row was written);
- ``patient``: ``erased_at``, ``nir_bidx`` and ``name_birth_bidx`` (keyed HMACs, not values);
- ``lab_order``: ``patient_id``, ``position``; ``result``: ``patient_id``, ``order_id``,
  ``position`` (the record's order as received);
  ``comment`` and ``attachment``: ``patient_id``, ``order_id``, ``result_id``, ``position``;
- ``audit_event``: the event's time, actor id, role, source address, purpose, action tag,
  outcome, internal patient ids, request id and field categories — never a personal value —
  with its chain position, hash and tag; ``audit_event_patient`` (event position → internal
  patient id, for who-read reports); ``audit_head`` (the chain's end and its current epoch
  key, wrapped by the master key); ``audit_checkpoint`` (signed Merkle roots);
- accounts: ``account`` (blind index of the e-mail, roles, status, argon2id password hash, the
  patient id of a patient's own account); ``enrolment``, ``recovery_code``, ``auth_session`` and
  ``api_token`` hold only SHA-256 digests of their secrets; ``login_throttle`` keys are HMACs;
- migrations: ``migration`` (plan digest, who and when, status, staging deadline, erasure);
  ``import_unit`` (one row per source unit: file index, sequence number, outcome, internal patient
  id, keyed content digest); ``order_provenance`` (order id → migration, file index, unit);
  ``source_patient`` (keyed HMAC of a legacy patient code → internal patient id);
  ``quarantine`` (unit position as line and segment number, field name and reason — never a
  value; the unit's bytes are ``raw``, sealed under the migration's staging key);
  ``migration_report`` (counts and outcomes of each step, as JSON without personal values);
- key store ``data_key``: ``patient_id``, ``kek_version``, ``dek_version``, ``created_at`` and the
  wrapped key (ciphertext under the master key); ``staging_key``: the same for a migration's
  staging key; ``pending_data_key``: the same for a patient's next data key during a re-key.

Everything else is AES-256-GCM ciphertext (an account's e-mail, name, RPPS and TOTP secret
included).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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

    def bind_processor(self, dialect):
        # The same check as `process_bind_param`, without the generic binary conversion on top
        # (both drivers take bytes as they are): a bulk insert binds millions of these.
        def process(value):
            if value is None:
                return None
            if type(value) is not Sealed:
                raise TypeError("a personal column accepts only Sealed values")
            return value.blob

        return process

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
ATTACHMENT_SEALED = ("name", "media_type", "content")

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
    # The breach classifier's findings (special categories), sealed under the patient's key as
    # a fixed-size bit mask: a row with findings looks like a row without.
    *_sealed("findings"),
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
    *_sealed("findings"),  # special categories and identifier kinds
)

attachment = Table(
    "attachment", metadata,
    Column("id", Uuid, primary_key=True),
    Column("patient_id", Uuid, ForeignKey("patient.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("order_id", Uuid, ForeignKey("lab_order.id", ondelete="CASCADE"), nullable=False),
    Column("result_id", Uuid, ForeignKey("result.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    _ts("created_at"),
    *_sealed(*ATTACHMENT_SEALED),
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
    Column("request_id", String(64), nullable=True),
    Column("categories", String(200), nullable=True),  # field categories touched
    # The chain (audit/chain.py): position, SHA-256 chain hash and the epoch key's HMAC tag.
    Column("seq", BigInteger, nullable=True, unique=True),
    Column("hash", LargeBinary(32), nullable=True),
    Column("tag", LargeBinary(32), nullable=True),
)
Index("ix_audit_event_at", audit_event.c.at)

# One row: where the chain stands, and the current epoch's key wrapped by the master key.
audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("last_hash", LargeBinary(32), nullable=False),
    Column("kek_version", Integer, nullable=False),
    Column("epoch_key", LargeBinary, nullable=False),  # wrapped
    _ts("updated_at"),
)

audit_checkpoint = Table(
    "audit_checkpoint", metadata,
    Column("last", BigInteger, primary_key=True, autoincrement=False),
    Column("first", BigInteger, nullable=False),
    Column("last_hash", LargeBinary(32), nullable=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("key_id", String(64), nullable=False),
    _ts("at"),
)

# Which events name which patient (the audit's who-read report without scanning every event).
audit_event_patient = Table(
    "audit_event_patient", metadata,
    Column("patient_id", Uuid, primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
)

# Accounts are people (or one named integration each): never shared. Their e-mail, name and
# RPPS are personal data, sealed like a patient's; login finds the account by a blind index.
account = Table(
    "account", metadata,
    Column("id", Uuid, primary_key=True),
    Column("email_bidx", LargeBinary(16), nullable=False, unique=True),
    *_sealed("email", "display_name", "rpps", "totp_secret"),
    Column("roles", String(200), nullable=False),  # comma-separated Role values
    Column("patient_id", Uuid, nullable=True),  # the patient role's own record
    Column("password_hash", String(200), nullable=True),  # argon2id; null until enrolled
    Column("totp_last_step", BigInteger, nullable=True),  # replay refusal
    # awaiting_approval | pending | active | disabled
    Column("status", String(20), nullable=False),
    _ts("created_at"),
    Column("created_by", String(200), nullable=False),
    _ts("enrolled_at", nullable=True),
    _ts("password_changed_at", nullable=True),
    # Who asked for the account or its last re-enrolment, and who approved it (four eyes).
    Column("requested_by", String(200), nullable=True),
    Column("approved_by", String(200), nullable=True),
    # The FINESS of the lab site the person works at: a read of a patient never seen at that
    # site is "unexplained" for the watcher (not personal: an establishment's number).
    Column("site", String(20), nullable=True),
    # Automatic response: a locked account waits for an admin and the DPO to unlock it
    # (``unlock_requests``: the two requesters, "role=actor" comma-separated); a session whose
    # last second factor is older than ``step_up_after`` must prove it again before any call.
    _ts("locked_at", nullable=True),
    Column("unlock_requests", String(500), nullable=True),
    _ts("step_up_after", nullable=True),
)

enrolment = Table(
    "enrolment", metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("account_id", Uuid, ForeignKey("account.id", ondelete="CASCADE"), nullable=False,
           index=True),
    *_sealed("totp_pending"),
    _ts("created_at"),
    _ts("expires_at"),
    _ts("used_at", nullable=True),
    Column("created_by", String(200), nullable=False),
)

recovery_code = Table(
    "recovery_code", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Uuid, ForeignKey("account.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("code_hash", LargeBinary(32), nullable=False, unique=True),
    _ts("created_at"),
    _ts("used_at", nullable=True),
)

auth_session = Table(
    "auth_session", metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("account_id", Uuid, ForeignKey("account.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("role", String(50), nullable=False),
    Column("stage", String(20), nullable=False),  # mfa (password checked) | active
    Column("source", String(200), nullable=False),
    _ts("created_at"),
    _ts("last_seen_at"),
    _ts("expires_at"),  # absolute limit
    _ts("mfa_at", nullable=True),  # last proof of the second factor (step-up)
    _ts("revoked_at", nullable=True),
)

api_token = Table(
    "api_token", metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, ForeignKey("account.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("label", String(100), nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated Permission values
    _ts("created_at"),
    _ts("expires_at"),
    _ts("revoked_at", nullable=True),
    _ts("last_used_at", nullable=True),
    Column("created_by", String(200), nullable=False),  # who asked for the token
    Column("status", String(20), nullable=False),  # awaiting_approval | active
    Column("approved_by", String(200), nullable=True),
)

# Failed logins per account and per source address (keyed HMAC, no address in clear).
login_throttle = Table(
    "login_throttle", metadata,
    Column("key", LargeBinary(32), primary_key=True),
    Column("failures", Integer, nullable=False),
    _ts("last_failure_at"),
    _ts("blocked_until", nullable=True),
)

# Care relationships the watcher explains reads with: the lab sites (FINESS) where a patient's
# orders were sampled. Establishment numbers beside internal ids, no personal value.
patient_site = Table(
    "patient_site", metadata,
    Column("patient_id", Uuid, primary_key=True),
    Column("finess", String(20), primary_key=True),
)

# Decoy patients: stored like any other, known only by a keyed tag of their id, so that reading
# this table does not say which patients are decoys.
honeytoken = Table(
    "honeytoken", metadata,
    Column("tag", LargeBinary(32), primary_key=True),
    # Keyed tag of the decoy's monitored e-mail address: a phishing message that reaches it
    # names the decoy, without the address being stored.
    Column("contact_tag", LargeBinary(32), nullable=True, index=True),
    _ts("created_at"),
    Column("created_by", String(200), nullable=False),
)

# Alerts of the watcher: rule, severity, actor, evidence as ids and counts (JSON), never a value.
alert = Table(
    "alert", metadata,
    Column("id", Uuid, primary_key=True),
    Column("dedup_key", String(300), nullable=False, unique=True),
    Column("rule", String(50), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("actor", String(200), nullable=False, index=True),
    _ts("raised_at"),
    _ts("last_seen_at"),
    Column("occurrences", Integer, nullable=False),
    Column("explanation", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("patient_ids", Text, nullable=False),  # space-separated internal ids
    Column("status", String(20), nullable=False, index=True),  # open | acknowledged
    Column("acknowledged_by", String(200), nullable=True),
    _ts("acknowledged_at", nullable=True),
    Column("ack_note", String(500), nullable=True),
    Column("escalation_level", Integer, nullable=False),
    _ts("next_escalation_at", nullable=True),
    Column("response", String(20), nullable=False),
)

# Every delivery attempt of an alert: which escalation level and channel, the outcome. The
# contact is named by its place in the escalation list, never by its address.
alert_delivery = Table(
    "alert_delivery", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Uuid, ForeignKey("alert.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("level", Integer, nullable=False),
    Column("channel", String(20), nullable=False),
    _ts("at"),
    Column("outcome", String(20), nullable=False),  # sent | failed
    Column("reason", String(200), nullable=True),
)

# Incidents (suspected breaches): the description is sealed (it may name people); the vector
# is one of a fixed list. The deadline is GDPR article 33's 72 hours from detection.
incident = Table(
    "incident", metadata,
    Column("id", Uuid, primary_key=True),
    _ts("opened_at"),
    _ts("detected_at"),
    _ts("deadline_at"),
    Column("vector", String(30), nullable=False),
    *_sealed("description"),
    Column("status", String(20), nullable=False),  # open | closed
    Column("opened_by", String(200), nullable=False),
)

# A scope computed for an incident: the selectors, the signed document (internal patient ids
# and data categories, no value; sealed) and its digest. The same selectors over the same log give
# the same document.
incident_scope = Table(
    "incident_scope", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Uuid, ForeignKey("incident.id"), nullable=False, index=True),
    _ts("computed_at"),
    Column("computed_by", String(200), nullable=False),
    Column("selectors", Text, nullable=False),
    # Sealed (the breach key): per patient id it says which data, special categories included,
    # an incident exposed; ``labvault.store.breach`` seals and opens it.
    Column("document", SealedBytes(), nullable=False),
    Column("digest", LargeBinary(32), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("patients", Integer, nullable=False),
)

# A message to a person about their data: an article 34 notice of an incident, or the answer
# to an exposure check, sent out of band to the contact on file. The verification code is
# kept only as a keyed hash; the delivery outcome (attempts, errors, provider id) is sealed.
breach_notice = Table(
    "breach_notice", metadata,
    Column("id", Uuid, primary_key=True),
    Column("kind", String(20), nullable=False),  # incident | incident-update | exposure-answer
    Column("incident_id", Uuid, ForeignKey("incident.id"), nullable=True, index=True),
    Column("patient_id", Uuid, nullable=False, index=True),
    Column("channel", String(10), nullable=False),  # email | sms | none
    # The scope an incident notice (or update) speaks from; NULL before revision 0010 (the
    # sealed delivery state says it) and for exposure answers.
    Column("scope_id", Integer, ForeignKey("incident_scope.id"), nullable=True),
    Column("code_tag", LargeBinary(32), nullable=False, unique=True),
    _ts("created_at"),
    Column("state", String(12), nullable=False),  # queued | done
    Column("attempts", Integer, nullable=False),
    _ts("next_attempt_at", nullable=True),
    *_sealed("delivery"),
)
Index("ix_breach_notice_queue", breach_notice.c.state, breach_notice.c.next_attempt_at)
# One incident notice per patient and channel, whoever queues it and however many at once.
_INCIDENT_NOTICE = breach_notice.c.kind == "incident"
Index("uq_breach_notice_incident_pair", breach_notice.c.incident_id, breach_notice.c.patient_id,
      breach_notice.c.channel, unique=True, sqlite_where=_INCIDENT_NOTICE,
      postgresql_where=_INCIDENT_NOTICE)
# And one update per patient, channel and scope: a later scope that adds to what a person was
# told is written to them once.
_UPDATE_NOTICE = breach_notice.c.kind == "incident-update"
Index("uq_breach_notice_update", breach_notice.c.incident_id, breach_notice.c.patient_id,
      breach_notice.c.channel, breach_notice.c.scope_id, unique=True,
      sqlite_where=_UPDATE_NOTICE, postgresql_where=_UPDATE_NOTICE)

# A signed certificate of erasure (retention runs): what was crypto-shredded, when, under which
# policy; internal ids only.
erasure_certificate = Table(
    "erasure_certificate", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _ts("issued_at"),
    Column("kind", String(20), nullable=False),
    Column("issued_by", String(200), nullable=False),
    Column("document", Text, nullable=False),
    Column("digest", LargeBinary(32), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("key_id", String(64), nullable=False),
)

migration = Table(
    "migration", metadata,
    Column("id", Uuid, primary_key=True),
    Column("plan_sha256", LargeBinary(32), nullable=False),
    _ts("created_at"),
    Column("created_by", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    _ts("staging_deadline"),
    _ts("erased_at", nullable=True),
)

import_unit = Table(
    "import_unit", metadata,
    Column("migration_id", Uuid, ForeignKey("migration.id"), primary_key=True),
    Column("file_index", Integer, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("outcome", String(12), nullable=False),
    Column("patient_id", Uuid, nullable=True),
    Column("content_digest", LargeBinary(16), nullable=True, index=True),
    _ts("created_at"),
)

order_provenance = Table(
    "order_provenance", metadata,
    Column("order_id", Uuid, ForeignKey("lab_order.id", ondelete="CASCADE"), primary_key=True),
    Column("migration_id", Uuid, ForeignKey("migration.id"), nullable=False),
    Column("file_index", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
)
Index("ix_order_provenance_unit", order_provenance.c.migration_id, order_provenance.c.file_index,
      order_provenance.c.seq)

source_patient = Table(
    "source_patient", metadata,
    Column("migration_id", Uuid, ForeignKey("migration.id"), primary_key=True),
    Column("code_bidx", LargeBinary(16), primary_key=True),
    Column("patient_id", Uuid, nullable=False),
)

quarantine = Table(
    "quarantine", metadata,
    Column("migration_id", Uuid, ForeignKey("migration.id"), primary_key=True),
    Column("file_index", Integer, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("line", Integer, nullable=True),
    Column("segment", String(200), nullable=True),
    Column("field", String(200), nullable=False),
    Column("reason", String(500), nullable=False),
    _ts("created_at"),
    *_sealed("raw"),
)

migration_report = Table(
    "migration_report", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("migration_id", Uuid, ForeignKey("migration.id"), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    _ts("at"),
    Column("actor", String(200), nullable=False),
    Column("body", Text, nullable=False),
)

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

staging_key = Table(
    "staging_key", keystore_metadata,
    Column("migration_id", Uuid, primary_key=True),
    Column("kek_version", Integer, nullable=False, index=True),
    Column("wrapped", LargeBinary, nullable=False),
    _ts("created_at"),
)

# A patient's next data key while a re-key (the retention policy) is under way: durable before
# any row is sealed under it, swapped into ``data_key`` at the end, then deleted and scrubbed.
pending_data_key = Table(
    "pending_data_key", keystore_metadata,
    Column("patient_id", Uuid, primary_key=True),
    Column("kek_version", Integer, nullable=False, index=True),
    Column("wrapped", LargeBinary, nullable=False),
    _ts("created_at"),
)
