"""The leak check: prove that no plaintext personal value of the vault's patients is on disk.

The vault decrypts every patient and hands this module their values as :class:`Needle`s, in
every encoding and spelling a careless program could have written them (upper/lower case,
accents stripped, UTF-8, Latin-1, UTF-16-LE, several date formats). :class:`LeakScanner`
then searches files, directories (SQLite database, ``-wal``/``-shm``, key files, logs) and
the output of ``pg_dump`` for all of them at once with an Aho-Corasick automaton.

A clean report proves only what it says. Limits:

* values shorter than ``MIN_NEEDLE_BYTES`` are skipped (and counted): they cannot be told
  apart from ciphertext noise or clear metadata;
* only the scanned bytes are seen: not process memory, swap, hibernation files, the free
  blocks of the file system, backups or other machines; nor values transformed otherwise
  (compressed, base64, split across fields).

Neither a report, a finding nor a needle ever shows a value: only categories and offsets.
"""

from __future__ import annotations

import datetime
import os
import re
import stat
import subprocess
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import ahocorasick
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from labvault.domain.normalize import strip_accents
from labvault.errors import StoreError
from labvault.secret import MASK

MIN_NEEDLE_BYTES = 6
MAX_FINDINGS_PER_SOURCE = 1000
DEFAULT_CHUNK = 8 << 20


@dataclass(frozen=True, slots=True, repr=False)
class Needle:
    """One byte string to look for. Its repr shows the category and the length, never the value."""

    category: str
    value: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"Needle(category={self.category!r}, len={len(self.value)})"


def _dedup(category: str, values: Iterable[bytes]) -> list[Needle]:
    return [Needle(category, v) for v in dict.fromkeys(values) if v]


def text_needles(category: str, text: str) -> list[Needle]:
    """All the spellings and encodings of ``text`` (short ones included; the scanner filters)."""
    forms = [text, unicodedata.normalize("NFC", text), text.upper(), text.lower()]
    forms += [strip_accents(f) for f in forms]
    out: list[bytes] = []
    for form in dict.fromkeys(forms):
        out.append(form.encode("utf-8"))
        try:
            out.append(form.encode("latin-1"))
        except UnicodeEncodeError:
            pass
        # UTF-16 doubles the byte length without adding information: "135" becomes six bytes
        # that SQLite's WAL index (little-endian uint16 tables) holds by chance. The minimum
        # length applies to characters for this encoding.
        if len(form) >= MIN_NEEDLE_BYTES:
            out.append(form.encode("utf-16-le"))
    return _dedup(category, out)


def date_needles(category: str, d: datetime.date) -> list[Needle]:
    """A date in the formats French software writes it (UTF-8)."""
    fmts = ("%Y-%m-%d", "%d/%m/%Y", "%Y%m%d", "%d%m%Y", "%d.%m.%Y")
    return _dedup(category, (d.strftime(f).encode() for f in fmts))


@dataclass(frozen=True)
class Finding:
    """Where a needle was found. Carries no value, ever."""

    category: str
    source: str
    offset: int


@dataclass
class LeakReport:
    sources: list[tuple[str, int]] = field(default_factory=list)
    needles_used: dict[str, int] = field(default_factory=dict)
    needles_skipped_short: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    findings_truncated: int = 0  # findings counted but not kept (cap per source)

    @property
    def clean(self) -> bool:
        return not self.findings and not self.findings_truncated

    def merge(self, other: LeakReport) -> LeakReport:
        """Combine the reports of two scans. Needle counts describe a needle set, not a scan:
        they are combined by maximum per category (equal when both come from one scanner)."""

        def combine(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: max(a.get(k, 0), b.get(k, 0)) for k in sorted(a.keys() | b.keys())}

        return LeakReport(
            sources=self.sources + other.sources,
            needles_used=combine(self.needles_used, other.needles_used),
            needles_skipped_short=combine(self.needles_skipped_short, other.needles_skipped_short),
            findings=self.findings + other.findings,
            findings_truncated=self.findings_truncated + other.findings_truncated,
        )

    def summary_lines(self) -> list[str]:
        total = len(self.findings) + self.findings_truncated
        lines = [
            f"leak check: {'CLEAN' if self.clean else f'LEAK: {total} finding(s)'}",
            f"scanned {len(self.sources)} source(s), {sum(n for _, n in self.sources)} bytes",
        ]
        if not self.needles_used:
            lines.append("warning: no needle long enough was used: nothing was checked")
        for cat in sorted(self.needles_used.keys() | self.needles_skipped_short.keys()):
            lines.append(
                f"  {cat}: {self.needles_used.get(cat, 0)} needle(s) used, "
                f"{self.needles_skipped_short.get(cat, 0)} skipped (shorter than the minimum)"
            )
        groups = Counter((f.source, f.category) for f in self.findings)
        first: dict[tuple[str, str], int] = {}
        for f in self.findings:
            first[f.source, f.category] = min(f.offset, first.get((f.source, f.category), f.offset))
        for (source, cat), n in sorted(groups.items()):
            lines.append(f"  found {cat} x{n} in {source} (first at byte {first[source, cat]})")
        if self.findings_truncated:
            lines.append(f"  ... and {self.findings_truncated} more finding(s) not listed")
        return lines

    def __repr__(self) -> str:
        return (
            f"LeakReport(clean={self.clean}, sources={len(self.sources)}, "
            f"findings={len(self.findings) + self.findings_truncated})"
        )


class LeakScanner:
    """Searches bytes for many needles at once. The automaton is built once, in __init__."""

    def __init__(self, needles: Iterable[Needle], min_bytes: int = MIN_NEEDLE_BYTES) -> None:
        used: dict[str, set[bytes]] = {}
        skipped: dict[str, set[bytes]] = {}
        for n in needles:
            kept = used if len(n.value) >= min_bytes else skipped
            kept.setdefault(n.category, set()).add(n.value)
        self.needles_used = {c: len(v) for c, v in sorted(used.items())}
        self.needles_skipped_short = {c: len(v) for c, v in sorted(skipped.items())}
        # pyahocorasick is built in unicode mode here; KEY_SEQUENCE would need the haystack as a
        # tuple of ints (8 bytes per byte, slow). Decoding with latin-1 maps each byte to exactly
        # one code point, so str offsets are byte offsets and the search runs in C on the str.
        by_value: dict[str, list[str]] = {}
        for cat, values in used.items():
            for v in values:
                by_value.setdefault(v.decode("latin-1"), []).append(cat)
        self._automaton: ahocorasick.Automaton | None = None
        self._longest = max((len(k) for k in by_value), default=0)
        if by_value:
            self._automaton = ahocorasick.Automaton(ahocorasick.STORE_ANY)
            for key, cats in by_value.items():
                self._automaton.add_word(key, (len(key), tuple(sorted(cats))))
            self._automaton.make_automaton()

    def _report(self) -> LeakReport:
        return LeakReport(
            needles_used=dict(self.needles_used),
            needles_skipped_short=dict(self.needles_skipped_short),
        )

    def _search(self, rep: LeakReport, source: str, buf: bytes, base: int, new_from: int) -> None:
        """Record matches in ``buf`` (at ``base`` in the source) ending at/after ``new_from``."""
        if self._automaton is None:
            return
        for end, (length, cats) in self._automaton.iter(buf.decode("latin-1")):
            if end < new_from:
                continue  # lies wholly in the overlap: already found in the previous chunk
            if _inside_hex_run(buf, end - length + 1, end):
                continue
            for cat in cats:
                if len(rep.findings) < MAX_FINDINGS_PER_SOURCE:
                    rep.findings.append(Finding(cat, source, base + end - length + 1))
                else:
                    rep.findings_truncated += 1

    def scan_bytes(self, source: str, data: bytes) -> LeakReport:
        rep = self._report()
        self._search(rep, source, data, 0, 0)
        rep.sources.append((source, len(data)))
        return rep

    def _scan_stream(self, source: str, stream: BinaryIO, chunk_size: int) -> LeakReport:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        rep = self._report()
        keep = max(self._longest - 1, 0)
        tail, total = b"", 0
        while chunk := stream.read(chunk_size):
            buf = tail + chunk
            self._search(rep, source, buf, total - len(tail), len(tail))
            total += len(chunk)
            tail = buf[max(len(buf) - keep, 0) :]
        rep.sources.append((source, total))
        return rep

    def scan_file(self, path: Path, chunk_size: int = DEFAULT_CHUNK) -> LeakReport:
        """Stream a file in chunks overlapping by (longest needle - 1) bytes: flat memory."""
        with open(path, "rb") as f:
            return self._scan_stream(str(path), f, chunk_size)

    def scan_paths(self, paths: Iterable[Path]) -> LeakReport:
        """Scan files, and every regular file under directories. Symlinks met while walking are
        not followed; a missing path raises (a leak check must not pass by skipping it)."""
        rep = self._report()
        for top in paths:
            top = Path(top)
            if not top.is_dir():
                _absorb(rep, self.scan_file(top))
                continue
            for root, dirs, files in os.walk(top, followlinks=False, onerror=_raise):
                dirs.sort()
                for name in sorted(files):
                    p = Path(root, name)
                    if stat.S_ISREG(os.lstat(p).st_mode):  # skips symlinks, fifos, sockets
                        _absorb(rep, self.scan_file(p))
        return rep

    def scan_pg_dump(self, url: str, chunk_size: int = DEFAULT_CHUNK) -> LeakReport:
        """Scan the plain-format ``pg_dump`` of the database at a SQLAlchemy URL, streamed
        from its stdout (never written to disk). The password goes through PGPASSWORD."""
        try:
            u = make_url(url)
        except (ArgumentError, ValueError):  # the parser's message may quote the URL
            raise StoreError("invalid PostgreSQL URL") from None
        if u.get_backend_name() != "postgresql" or not u.database:
            raise StoreError("pg_dump needs a postgresql URL naming a database")
        password = u.password
        # URL.set(password=None) keeps the password; NamedTuple._replace removes it
        uri = u._replace(drivername="postgresql", password=None).render_as_string(False)
        env = {**os.environ, "PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", "10")}
        if password is not None:
            env["PGPASSWORD"] = str(password)
        cmd = ["pg_dump", "--format=plain", "--no-owner", f"--dbname={uri}"]
        try:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell; the URI is one argument
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
            )
        except OSError as exc:
            raise StoreError(f"cannot run pg_dump: {exc.strerror}") from None
        err: list[bytes] = []
        drain = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
        drain.start()
        try:
            rep = self._scan_stream(f"pg_dump:{u.database}", _ByteaDecoded(proc.stdout),  # type: ignore[arg-type]
                                    chunk_size)
        finally:
            if proc.poll() is None:
                proc.stdout.close()
            code = proc.wait()
            drain.join()
        if code != 0:
            text = b"".join(err).decode("utf-8", "replace")
            msg = " ".join(text[max(text.rfind("error:"), 0) :].split())[:300]
            if password:
                msg = msg.replace(str(password), MASK)
            raise StoreError(f"pg_dump failed for database {u.database} (exit {code}): {msg}")
        return rep


_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def _inside_hex_run(buf: bytes, start: int, end: int) -> bool:
    """A match made only of hex digits, inside a run of hex digits as long as an id's, is not a
    value.

    Clear UUIDs are stored as 32 hex characters (SQLite) and 8-digit dates or short numbers
    turn up inside them by chance (about one in 4 billion positions per needle, and a vault
    has millions of such positions and thousands of such needles). Such a match has at least
    ID_RUN hex characters around it. A value written in clear between ordinary text (in
    SQLite, columns are stored side by side, so a neighbour's first or last letter may be a
    hex digit) has few and is reported; the price is that a digit-only value stored right
    beside a hex id is not.
    """
    match = buf[start:end + 1]
    if not all(b in _HEX_DIGITS for b in match):
        return False
    around = 0
    i = start - 1
    while i >= 0 and buf[i] in _HEX_DIGITS and around < ID_RUN:
        around += 1
        i -= 1
    i = end + 1
    while i < len(buf) and buf[i] in _HEX_DIGITS and around < ID_RUN:
        around += 1
        i += 1
    return around >= ID_RUN


ID_RUN = 16

_BYTEA_HEX = re.compile(rb"\\\\?x((?:[0-9a-f]{2})+)")


class _ByteaDecoded:
    """A pg_dump stream with its bytea hex literals (``\\x6a0f...``) turned back into bytes.

    Without it a plaintext value stored in a bytea column would hide in hex from the scan, and
    digit-only values (``19850312``) would match by chance inside hex-encoded ciphertext.
    Offsets in findings are offsets in this decoded stream.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def read(self, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            line = self._stream.readline()
            if not line:
                break
            out += _BYTEA_HEX.sub(lambda m: bytes.fromhex(m.group(1).decode("ascii")), line)
        return bytes(out)


def _raise(exc: OSError) -> None:
    raise exc


def _absorb(into: LeakReport, part: LeakReport) -> None:
    """Add a scan of the same scanner to ``into``, in place (no quadratic copying)."""
    into.sources += part.sources
    into.findings += part.findings
    into.findings_truncated += part.findings_truncated
