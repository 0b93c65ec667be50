"""HL7 v2 syntax primitives for `labvault.ingest.hl7v2`: delimiters, escapes, character sets,
segment splitting.

Delimiters come from MSH-1/MSH-2 (`_separators`); `_Delims` holds one message's set and
unescapes leaf values (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``, ``\\Xhh..\\``, ``\\.br\\``/``\\.sp\\``,
formatting dropped, the local ``\\ZUhhhh\\``; an unknown escape is kept as written). `_charset`
maps MSH-18 to a codec and `_decode` detects one when MSH-18 is empty. The remaining helpers
cut a region of the file into lines and segments (MLLP framing bytes removed).
"""

from __future__ import annotations

import functools
import re

from labvault.errors import InvalidRecord
from labvault.ingest.base import BOM

_C1 = re.compile(rb"[\x80-\x9f]")
_DIGITS = re.compile(r"[0-9]+")
_CR_LINE = re.compile(rb"[^\r]*(?:\r\n|\r)|[^\r]+\Z")
_FIRST_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")
_FORBIDDEN = "\r\n\x0b\x1c"
_CHARSET_ALIASES = {"UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "UTF8": "utf-8",
                    "UNICODE": "utf-8", "8859/1": "iso-8859-1", "CP1252": "cp1252",
                    "WINDOWS-1252": "cp1252", "ASCII": ""}


# ---------------------------------------------------------------- delimiters and escapes


class _Delims:
    """One message's delimiters and character set; ``u`` unescapes a leaf value."""

    __slots__ = ("_simple", "_sub", "cs", "encoding", "esc", "fs", "not_segment", "rs", "ss", "u")

    def __init__(self, fs: str, cs: str, rs: str, esc: str, ss: str, encoding: str) -> None:
        self.fs, self.cs, self.rs, self.esc, self.ss = fs, cs, rs, esc, ss
        self.encoding = encoding
        self._simple = {"F": fs, "S": cs, "R": rs, "E": esc, "T": ss, "H": "", "N": "",
                        ".br": "\n", ".sp": "\n", ".ce": "\n", ".fi": "", ".nf": "",
                        ".in": "", ".ti": "", ".sk": " "}
        e = re.escape(esc)
        self._sub = re.compile(f"{e}([^{e}]*){e}").sub if esc else None
        self.u = self._unescape if esc else _identity
        # a line start not followed by a segment name and the field separator
        self.not_segment = re.compile(rf"\r(?![A-Z][A-Z0-9]{{2}}(?:{re.escape(fs)}|\r|$))")

    def _unescape(self, text: str) -> str:
        if self.esc not in text or self._sub is None:
            return text
        return self._sub(self._sequence, text)

    def _sequence(self, m: re.Match[str]) -> str:
        s = m.group(1)
        simple = self._simple.get(s)
        if simple is not None:
            return simple
        if s[:1] == "X" and len(s) % 2 == 1 and len(s) > 1 and _is_hex(s[1:]):
            data = bytes.fromhex(s[1:])
            try:
                return data.decode(self.encoding)
            except UnicodeDecodeError:
                return data.decode("latin-1")
        if s[:2] == "ZU" and 4 <= len(s) - 2 <= 6 and _is_hex(s[2:]):
            cp = int(s[2:], 16)
            if cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF:
                return chr(cp)
        if s[:3] in (".sp", ".sk", ".in", ".ti") and _DIGITS.fullmatch(s[3:].lstrip("+-")):
            return "\n" if s[:3] == ".sp" else ""
        return m.group(0)


def _identity(text: str) -> str:
    return text


def _is_hex(s: str) -> bool:
    return s.isascii() and all(c in "0123456789abcdefABCDEF" for c in s)


@functools.lru_cache(maxsize=64)
def _delims(fs: str, cs: str, rs: str, esc: str, ss: str, encoding: str) -> _Delims:
    return _Delims(fs, cs, rs, esc, ss, encoding)


def _separators(msh: str) -> tuple[str, str, str, str, str]:
    """MSH-1 and MSH-2: field, component, repetition, escape, subcomponent characters."""
    fs = msh[3:4]
    if not fs or fs.isalnum() or fs.isspace() or fs in _FORBIDDEN:
        raise InvalidRecord("MSH-1", "invalid field separator")
    end = msh.find(fs, 4)
    enc = msh[4:end] if end != -1 else msh[4:]
    chars = fs + enc
    if (not 2 <= len(enc) <= 5 or len(set(chars)) != len(chars)
            or any(c.isalnum() or c.isspace() or c in _FORBIDDEN for c in enc)):
        raise InvalidRecord("MSH-2", "invalid encoding characters")
    cs, rs = enc[0], enc[1]
    esc = enc[2] if len(enc) > 2 else ""
    ss = enc[3] if len(enc) > 3 else ("&" if "&" not in chars else "")
    return fs, cs, rs, esc, ss


def _charset(declared: str) -> tuple[str | None, bool]:
    """Python codec for MSH-18 (None: detect) and whether the value was understood."""
    d = declared.strip().upper()
    if not d:
        return None, True
    if d in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[d] or None, True
    m = re.fullmatch(r"8859/([0-9]{1,2})", d)
    if m and int(m.group(1)) in (*range(2, 12), 13, 14, 15, 16):
        return f"iso-8859-{int(m.group(1))}", True
    return None, False


def _decode(data: bytes, charset: str | None) -> tuple[str, str, str]:
    """Text, codec used and the label reported in the stats."""
    if data.isascii():
        return data.decode("ascii"), "ascii", "ascii"
    if charset in (None, "utf-8"):
        try:
            return data.decode("utf-8"), "utf-8", "utf-8"
        except UnicodeDecodeError:
            charset = None
    if charset in (None, "iso-8859-1", "cp1252"):
        label = "cp1252" if charset == "cp1252" or _C1.search(data) else "iso-8859-1"
        try:
            return data.decode("cp1252"), "cp1252", label
        except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
            return data.decode("latin-1"), "latin-1", "iso-8859-1"
    try:
        return data.decode(charset), charset, charset
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1", "iso-8859-1"


# ---------------------------------------------------------------- values


def _c(parts: list[str], i: int) -> str:
    return parts[i] if i < len(parts) else ""


def _pad(parts: list[str], n: int) -> list[str]:
    if len(parts) < n:
        parts += [""] * (n - len(parts))
    return parts


# ---------------------------------------------------------------- lines and segments


def _contents(lines: list[bytes]) -> list[bytes]:
    """Lines without MLLP framing bytes."""
    return [line.lstrip(b"\x0b").rstrip(b"\x1c") for line in lines]


def _split_first_line(region: bytes) -> tuple[bytes, bytes]:
    """The region's first line with its terminator, and the rest."""
    m = _FIRST_LINE.match(region)
    end = m.end() if m else len(region)
    return region[:end], region[end:]


def _raw_lines(region: bytes, cr_only: bool) -> list[bytes]:
    """The region's lines with their ends (CR, LF, CRLF; only CR and CRLF if ``cr_only``)."""
    return _CR_LINE.findall(region) if cr_only else region.splitlines(keepends=True)


def _nonblank(raw_lines: list[bytes]) -> list[bytes]:
    """Segments: lines without their ends and MLLP framing bytes, empty ones left out."""
    out = []
    for i, line in enumerate(_contents([r.rstrip(b"\r\n") for r in raw_lines])):
        if i == 0 and line.startswith(BOM):
            line = line[3:]
        if line and not line.isspace():
            out.append(line)
    return out


def _malformed(d: _Delims, text: str) -> set[int]:
    """Indexes of the segments that do not start with a segment name."""
    if d.not_segment.search(text) is None:
        return set()
    return {text.count("\r", 0, m.end()) for m in d.not_segment.finditer(text)}
