"""The leak check's scanner: planted synthetic values are found, clean bytes give nothing."""

from __future__ import annotations

import datetime
import os
import random
import uuid
from pathlib import Path

import pytest

from labvault.errors import StoreError
from labvault.leakcheck import (
    MAX_FINDINGS_PER_SOURCE,
    MIN_NEEDLE_BYTES,
    Finding,
    LeakReport,
    LeakScanner,
    Needle,
    date_needles,
    text_needles,
)

NAME = "Zéphyrine Quatrebarbes"
NIR = "2 91 07 75 116 042 17"
BIRTH = datetime.date(1991, 7, 23)


def realistic_needles() -> list[Needle]:
    return [
        *text_needles("name", NAME),
        *text_needles("name", "Hélène Vautrinot"),
        *text_needles("nir", NIR),
        *text_needles("nir", NIR.replace(" ", "")),
        *text_needles("email", "zephyrine.quatrebarbes@example.test"),
        *text_needles("phone", "06 71 42 98 35"),
        *text_needles("address", "17 rue des Grenadières, 86000 Poitiers"),
        *text_needles("comment", "patiente à jeun, prélèvement difficile"),
        *text_needles("result_value", "glycémie 5,43 mmol/L"),
        *date_needles("birth_date", BIRTH),
    ]


def assert_no_value(text: str, needles: list[Needle]) -> None:
    for n in needles:
        if len(n.value) >= 3:
            assert n.value.decode("latin-1") not in text
            for enc in ("utf-8", "utf-16-le"):
                try:
                    assert n.value.decode(enc) not in text
                except UnicodeDecodeError:
                    pass


def test_planted_values_found_with_category_and_offset(tmp_path: Path) -> None:
    scanner = LeakScanner(realistic_needles())
    data = bytearray(random.Random(1).randbytes(5000))
    data[1000:1000] = NAME.encode()
    data[3000:3000] = b"1991-07-23"
    path = tmp_path / "vault.sqlite"
    path.write_bytes(bytes(data))
    rep = scanner.scan_file(path)
    assert not rep.clean
    assert rep.findings == [
        Finding("name", str(path), 1000),
        Finding("birth_date", str(path), 3000),  # inserted after the name: index 3000 as is
    ]
    assert rep.sources == [(str(path), len(data))]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 16, 64])
def test_value_straddling_chunk_boundary_found_exactly_once(
    tmp_path: Path, chunk_size: int
) -> None:
    scanner = LeakScanner(text_needles("name", NAME))
    value = NAME.encode()
    data = b"x" * 61 + value + b"y" * 50 + value
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    rep = scanner.scan_file(path, chunk_size=chunk_size)
    expected = scanner.scan_bytes(str(path), data)
    assert rep.findings == expected.findings
    assert [f.offset for f in rep.findings] == [61, 61 + len(value) + 50]
    assert rep.sources == [(str(path), len(data))]


def test_accent_and_case_variants_found() -> None:
    scanner = LeakScanner(text_needles("name", "Hélène Vautrinot"))
    for stored in ("HELENE VAUTRINOT", "helene vautrinot", "HÉLÈNE VAUTRINOT", "hélène vautrinot"):
        rep = scanner.scan_bytes("mem", b"..." + stored.encode() + b"...")
        assert [(f.category, f.offset) for f in rep.findings] == [("name", 3)], stored


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16-le", "utf-8"])
def test_other_encodings_found(encoding: str) -> None:
    scanner = LeakScanner(text_needles("address", "17 rue des Grenadières"))
    rep = scanner.scan_bytes("log", b"\x00\x01" + "17 rue des Grenadières".encode(encoding))
    assert [f.offset for f in rep.findings] == [2]


def test_dates_in_french_formats_found() -> None:
    scanner = LeakScanner(date_needles("birth_date", BIRTH))
    for stored in (b"1991-07-23", b"23/07/1991", b"19910723", b"23071991", b"23.07.1991"):
        rep = scanner.scan_bytes("csv", b";" + stored + b";")
        assert [(f.category, f.offset) for f in rep.findings] == [("birth_date", 1)]


def test_short_needles_skipped_and_counted() -> None:
    needles = [*text_needles("name", "Léa"), *text_needles("phone", "0671429835")]
    scanner = LeakScanner(needles)
    # "Léa" is too short in every encoding: utf-8 and latin-1 are under six bytes, and
    # utf-16-le is not produced for fewer than six characters
    assert scanner.needles_skipped_short == {"name": 9}
    assert scanner.needles_used == {"phone": 2, "name": 0} or scanner.needles_used == {"phone": 2}
    rep = scanner.scan_bytes("x", b"Lea LEA lea L\xc3\xa9a 0671429835")
    assert [(f.category, f.offset) for f in rep.findings] == [("phone", 17)]
    assert rep.needles_skipped_short == {"name": 9}
    assert any("name: 0 needle(s) used, 9 skipped" in line for line in rep.summary_lines())


def test_utf16_needs_six_characters_not_six_bytes() -> None:
    short = LeakScanner(text_needles("result_value", "135"))  # utf-16-le would be 6 bytes
    assert short.scan_bytes("x", "135".encode("utf-16-le")).clean
    scanner = LeakScanner(text_needles("name", "Léonore"))
    assert not scanner.scan_bytes("x", "Léonore".encode("utf-16-le")).clean
    assert MIN_NEEDLE_BYTES == 6


def test_clean_random_file_gives_no_finding(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(random.Random(20240611).randbytes(2 << 20))
    rep = LeakScanner(realistic_needles()).scan_file(path, chunk_size=1 << 18)
    assert rep.clean, rep.summary_lines()
    assert rep.sources == [(str(path), 2 << 20)]
    assert rep.summary_lines()[0] == "leak check: CLEAN"


def test_directory_walk_finds_wal_and_logs_not_symlinks(tmp_path: Path) -> None:
    (tmp_path / "data" / "logs").mkdir(parents=True)
    (tmp_path / "data" / "vault.sqlite").write_bytes(b"\x00" * 100)
    (tmp_path / "data" / "vault.sqlite-wal").write_bytes(b"page" + NAME.encode("utf-8"))
    (tmp_path / "data" / "vault.sqlite-shm").write_bytes(b"\x00" * 32)
    (tmp_path / "data" / "logs" / "app.log").write_bytes(b"nir=" + NIR.encode())
    outside = tmp_path / "outside.txt"
    outside.write_bytes(NAME.upper().encode())
    (tmp_path / "data" / "link.txt").symlink_to(outside)
    (tmp_path / "data" / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    rep = LeakScanner(realistic_needles()).scan_paths([tmp_path / "data"])
    scanned = sorted(Path(s).name for s, _ in rep.sources)
    assert scanned == ["app.log", "vault.sqlite", "vault.sqlite-shm", "vault.sqlite-wal"]
    found = sorted((Path(f.source).name, f.category, f.offset) for f in rep.findings)
    assert found == [("app.log", "nir", 4), ("vault.sqlite-wal", "name", 4)]
    with pytest.raises(FileNotFoundError):
        LeakScanner(realistic_needles()).scan_paths([tmp_path / "missing"])


def test_reports_and_reprs_never_show_values(tmp_path: Path) -> None:
    needles = realistic_needles()
    blob = b"|".join(n.value for n in needles)
    path = tmp_path / "dump.bin"
    path.write_bytes(blob)
    scanner = LeakScanner(needles)
    rep = scanner.scan_file(path).merge(scanner.scan_bytes("mem", blob))
    assert not rep.clean
    text = "\n".join(
        [*rep.summary_lines(), repr(rep), str(rep), *map(repr, rep.findings), *map(repr, needles)]
    )
    assert_no_value(text, needles)
    assert (
        repr(Needle("name", NAME.encode())) == f"Needle(category='name', len={len(NAME.encode())})"
    )
    assert NAME not in str(Needle("name", NAME.encode()))


def test_merge_and_findings_cap() -> None:
    scanner = LeakScanner(text_needles("nir", NIR))
    rep = scanner.scan_bytes("a", NIR.encode() * (MAX_FINDINGS_PER_SOURCE + 5))
    assert len(rep.findings) == MAX_FINDINGS_PER_SOURCE
    assert rep.findings_truncated == 5
    merged = rep.merge(scanner.scan_bytes("b", b"clean"))
    assert [s for s, _ in merged.sources] == ["a", "b"]
    assert merged.needles_used == rep.needles_used
    assert merged.findings_truncated == 5 and not merged.clean
    assert LeakReport().clean


def test_empty_needle_set_is_reported() -> None:
    rep = LeakScanner([]).scan_bytes("x", b"anything")
    assert rep.clean
    assert any("nothing was checked" in line for line in rep.summary_lines())


# --- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture
def pg_url() -> str:
    url = os.environ.get("LABVAULT_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("LABVAULT_TEST_POSTGRES_URL must be set in CI")
        pytest.skip("LABVAULT_TEST_POSTGRES_URL not set")
    return url


@pytest.mark.postgres
def test_pg_dump_finds_planted_value_and_clean_table_gives_none(pg_url: str) -> None:
    psycopg = pytest.importorskip("psycopg")
    from sqlalchemy.engine import make_url

    base = make_url(pg_url)
    admin_uri = base._replace(drivername="postgresql").render_as_string(False)
    dbname = f"labvault_leak_{uuid.uuid4().hex[:12]}"
    db_url = base._replace(database=dbname).render_as_string(False)
    db_uri = base._replace(drivername="postgresql", database=dbname).render_as_string(False)
    scanner = LeakScanner(realistic_needles())
    with psycopg.connect(admin_uri, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        with psycopg.connect(db_uri, autocommit=True) as conn:
            conn.execute("CREATE TABLE patient (id int PRIMARY KEY, sealed bytea, note text)")
            conn.execute(
                "INSERT INTO patient VALUES (1, %s, %s)",
                (random.Random(7).randbytes(64), "sample ok"),
            )
            rep = scanner.scan_pg_dump(db_url, chunk_size=64)
            assert rep.clean, rep.summary_lines()
            assert rep.sources[0][0] == f"pg_dump:{dbname}" and rep.sources[0][1] > 0

            conn.execute("CREATE TABLE careless (note text)")
            conn.execute("INSERT INTO careless VALUES (%s)", (f"dossier de {NAME}",))
            rep = scanner.scan_pg_dump(db_url, chunk_size=64)
            assert [f.category for f in rep.findings] == ["name"]
            assert rep.findings[0].source == f"pg_dump:{dbname}"
            assert_no_value("\n".join(rep.summary_lines()), realistic_needles())

            # plaintext written into a bytea column is hex in the dump: still found
            conn.execute("DELETE FROM careless")
            conn.execute("INSERT INTO patient VALUES (2, %s, 'x')", (f"nom {NAME}".encode(),))
            rep = scanner.scan_pg_dump(db_url, chunk_size=64)
            assert [f.category for f in rep.findings] == ["name"]
    finally:
        with psycopg.connect(admin_uri, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.mark.postgres
def test_pg_dump_failure_raises_store_error_without_password(pg_url: str) -> None:
    url = make_bad_url(pg_url, password="s3cr3t-P@ss")
    with pytest.raises(StoreError) as exc:
        LeakScanner(realistic_needles()).scan_pg_dump(url)
    assert "s3cr3t" not in str(exc.value)
    assert "pg_dump" in str(exc.value)


def test_invalid_url_raises_store_error() -> None:
    scanner = LeakScanner([])
    with pytest.raises(StoreError):
        scanner.scan_pg_dump("sqlite:///tmp/x.db")
    with pytest.raises(StoreError) as exc:
        scanner.scan_pg_dump("postgresql://u:hunter2@h:notaport/db")
    assert "hunter2" not in str(exc.value)


def make_bad_url(url: str, password: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return u.set(password=password, database="labvault_no_such_db_x").render_as_string(False)


def test_digit_value_inside_a_hex_uuid_is_noise_but_standalone_is_found() -> None:
    scanner = LeakScanner(date_needles("birth_date", datetime.date(1969, 2, 10)))
    noise = b"1d28027cec8c442e19690210cf2bff80"  # a clear UUID that happens to hold 19690210
    assert scanner.scan_bytes("uuid", noise).clean
    leaked = b"PID|1||269027308499685||REGNIER^OCEANE||19690210|F"
    rep = scanner.scan_bytes("hl7", leaked)
    assert [f.category for f in rep.findings] == ["birth_date"]
