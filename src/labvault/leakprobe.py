"""The vault side of the leak check: which plaintext values to look for, and where.

The values come from the vault itself (a bulk read by an authorised principal, audited); the
places are every file of the data directory (SQLite main files, WAL and shared memory, key
store, key file, anything else left there), SQLite files configured outside it, and a
``pg_dump`` of each PostgreSQL database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from labvault.access.principal import Principal
from labvault.config import Settings
from labvault.domain.records import PatientRecord
from labvault.leakcheck import LeakReport, LeakScanner, Needle, date_needles, text_needles
from labvault.store.engine import sqlite_path
from labvault.vault import Vault


def record_needles(record: PatientRecord) -> Iterator[Needle]:
    """Every personal value of a record, in the forms it could have been written in clear."""
    p = record.patient
    for name in (p.last_name, p.birth_name, p.first_names):
        if name:
            yield from text_needles("name", name)
    yield from date_needles("birth_date", p.birth_date)
    if p.nir:
        yield from text_needles("nir", p.nir)
        n = p.nir
        yield from text_needles("nir", f"{n[0]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:10]} "
                                       f"{n[10:13]} {n[13:]}")
    if p.ins and p.ins.matricule != p.nir:
        yield from text_needles("nir", p.ins.matricule)
    if p.phone:
        yield from text_needles("phone", p.phone)
        yield from text_needles("phone", "".join(c for c in p.phone if c.isdigit()))
    if p.email:
        yield from text_needles("email", p.email)
    if p.address:
        yield from text_needles("address", p.address.line1)
    if p.complementary_insurance and p.complementary_insurance.member_id:
        yield from text_needles("insurance", p.complementary_insurance.member_id)
    for order in record.orders:
        if order.prescriber:
            yield from text_needles("prescriber", order.prescriber.last_name)
        if order.lab_file_number:
            yield from text_needles("lab_file_number", order.lab_file_number)
        for c in order.comments:
            yield from text_needles("comment", c.text)
        for r in order.results:
            yield from text_needles("result_value", r.value)
            for c in r.comments:
                yield from text_needles("comment", c.text)
            for a in r.attachments:
                yield from text_needles("attachment", a.name)
                if a.media_type.startswith("text/"):
                    head = a.content[:200].decode("utf-8", "replace").splitlines()
                    if head and head[0].strip():
                        yield from text_needles("attachment", head[0].strip()[:80])


def storage_locations(settings: Settings) -> list[Path]:
    """Files and directories that hold the vault on disk (PostgreSQL aside)."""
    places = [settings.data_dir]
    for url in (settings.database_url, settings.keystore_url):
        path = sqlite_path(url)
        if path is not None and not path.resolve().is_relative_to(settings.data_dir.resolve()):
            places += [q for q in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if q.exists()]
    return places


def postgres_urls(settings: Settings) -> list[str]:
    return [u for u in (settings.database_url, settings.keystore_url)
            if u.startswith("postgresql")]


def run_leak_check(vault: Vault, settings: Settings, principal: Principal) -> LeakReport:
    """Look for every plaintext value of every live patient in all of the vault's storage."""
    needles = [n for record in vault.iter_records(principal) for n in record_needles(record)]
    scanner = LeakScanner(needles)
    report = scanner.scan_paths(storage_locations(settings))
    for url in postgres_urls(settings):
        report = report.merge(scanner.scan_pg_dump(url))
    return report
