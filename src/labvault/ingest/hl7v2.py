"""HL7 v2 (2.3 to 2.5.1) ORU^R01 messages: laboratory results as French labs send them.

A file holds messages (MSH ... up to the next MSH, BHS, BTS, FHS or FTS). A unit is one message,
or one PID group of a message holding several (``Position.segment`` "message 12, patient 2";
the second and later groups' raw bytes start with a copy of the MSH line so they can be
re-read alone). ``Position.line`` is the 1-based number, among the file's non-empty segments
(lines), of the unit's MSH (first group) or PID (later groups).

Modules: this one is the entry point (`sniff`, `read`; `write` and `PARIS` re-exported from
`labvault.ingest.hl7v2_write`) and the streaming layer: it cuts the file into messages and PID
groups, reads MSH and decides what is rejected whole. `labvault.ingest.hl7v2_syntax` holds the
delimiter, escape, character-set and segment-splitting primitives; `labvault.ingest.hl7v2_fields`
maps a PID group's segments to domain records (its docstring has the field-by-field mapping:
PID, IN1, ORC/OBR, XCN/PRT, OBX, NTE, code maps, dates and times).

Syntax. Delimiters come from MSH-1/MSH-2 (any consistent set, not only ``|^~\\&``; a field
separator or encoding characters that are alphanumeric, blank, repeated or missing reject the
message on MSH-1/MSH-2). Segments end with CR, LF or CRLF (when a CR-terminated message holds a
bare LF that leaves a line without a segment name, the LF is read as a line break inside the field,
with an anomaly: some systems let users type line breaks in comments); MLLP blocks (0x0B ... 0x1C 0x0D),
one per message or around a whole batch, are unwrapped; FHS/BHS/BTS/FTS envelopes are counted
in the stats and are not units (their bytes join the next unit, or the previous one for
BTS/FTS). Character set: MSH-18 when given (``UNICODE UTF-8``, ``8859/1`` read as CP1252, whose
printable characters are a superset, ``8859/n``), else detected per message: valid UTF-8 ->
utf-8, else CP1252 with a latin-1 fallback; a UTF-8 BOM is skipped. Escapes ``\\F\\ \\S\\ \\T\\
\\R\\ \\E\\``, ``\\Xhh..\\`` (bytes in the message's character set), ``\\.br\\`` and ``\\.sp\\``
(line feed), ``\\H\\ \\N\\`` and other formatting (dropped) and the local ``\\ZUhhhh\\`` (a
code point, written by `labvault.ingest.hl7v2_write`) are decoded by the reader's own splitter;
an unknown escape is kept as written. python-hl7 (installed) is not used: its splitting alone
reads about 6,000 results/s where this whole reader does about 50,000, its ``unescape`` logs the
field value when an escape is malformed, and it checks with ``assert`` (gone under ``python -O``).

Messages. PV1, SPM, SFT, TQ1, Z-segments and other segments are counted in the stats (and
ignored by the mapping). A message without PID, with ORC/OBR/OBX before its PID, or whose MSH-9
is not ORU^R01 is rejected whole; a line without a segment name rejects its PID group (the whole
message when it comes before the first PID). Truncation: at the end of the file, a message still
inside an MLLP block, or whose last segment has no terminator and is not a complete result-level
segment (an OBX reaching OBX-11, an SPM or a Z-segment), is rejected as truncated (e.g. an MSH
and a PID cut mid-segment). Lines before the first MSH or after a BTS/FTS that are not segments
of a message become a unit "text outside any message".

`NOT_CARRIED` is empty: every domain field has a place (see `labvault.ingest.hl7v2_fields`).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterator
from typing import BinaryIO

from labvault.errors import InvalidRecord
from labvault.ingest.base import (
    BOM,
    Anomaly,
    Parsed,
    Position,
    ReadStats,
    Rejected,
    Unit,
    line_ending_label,
    sha256,
    source_name,
)
from labvault.ingest.hl7v2_fields import _FINESS, _Ctx, _err, _group
from labvault.ingest.hl7v2_syntax import (
    _c,
    _charset,
    _contents,
    _decode,
    _Delims,
    _delims,
    _malformed,
    _nonblank,
    _pad,
    _raw_lines,
    _separators,
    _split_first_line,
)
from labvault.ingest.hl7v2_write import PARIS, write

__all__ = ["NOT_CARRIED", "PARIS", "read", "sniff", "write"]

NOT_CARRIED: frozenset[str] = frozenset()

MAX_UNIT_BYTES = 64 << 20  # a message larger than this is cut and rejected
_CHUNK = 1 << 20
_SEGMENT_NAME = re.compile(rb"[A-Z][A-Z0-9]{2}")
_SNIFF = re.compile(rb"(?:^|[\r\n\x0b])(?:MSH|FHS|BHS)([^A-Za-z0-9\s])"
                    rb"(?:(?!\1)[^A-Za-z0-9\s]){2,5}\1")
_BOUNDARY = re.compile(rb"[\r\n\x1c]\x0b*(?:MSH|[BF]HS|[BF]TS)")
_OWN_COUNTS = frozenset({b"junk", b"truncated", b"oversized"})
_ENVELOPE = frozenset({b"FHS", b"BHS", b"BTS", b"FTS"})
_PARSE_ERRORS = (InvalidRecord, ValueError, KeyError, IndexError, UnicodeError, OverflowError,
                 TypeError, AttributeError)


# ---------------------------------------------------------------- streaming


def _complete_tail(content: bytes, fs: bytes) -> bool:
    """Whether an unterminated last segment can stand as complete (see the docstring)."""
    name = content[:3]
    if name == b"OBX":
        return bool(fs) and content.count(fs) >= 11
    return name == b"SPM" or (name[:1] == b"Z" and _SEGMENT_NAME.fullmatch(name) is not None)


class _Message:
    """A message's bytes waiting for what follows it (BTS/FTS lines join its raw bytes)."""

    __slots__ = ("eof", "first_line", "lead", "mllp_open", "region", "segments", "tail")

    def __init__(self, region: bytes, lead: bytes, segments: list[bytes], first_line: int,
                 mllp_open: bool) -> None:
        self.region, self.lead, self.segments = region, lead, segments
        self.first_line, self.mllp_open = first_line, mllp_open
        self.tail, self.eof = b"", True


class _Reader:
    def __init__(self, stream: BinaryIO, name: str, stats: ReadStats) -> None:
        self.stream, self.stats = stream, stats
        self.fname = source_name(name)
        self.seqs = itertools.count(1)
        self.messages = 0
        self.number = 0  # non-empty lines seen so far
        self.names: Counter[bytes] = Counter()
        self.ends: Counter[str] = Counter()
        self.encodings: dict[str, None] = {}
        self.versions: dict[str, None] = {}
        self.notes: dict[str, None] = {}
        self.mllp_open = False
        self.first_region = True

    # -- regions: the file cut before every line that starts a message or an envelope

    def regions(self) -> Iterator[tuple[bytes, bool]]:
        """(bytes, cut): ``cut`` when a region reached the size limit without a boundary."""
        buf = b""
        scan = 0
        eof = False
        while not eof:
            chunk = self.stream.read(_CHUNK)
            eof = not chunk
            buf = buf + chunk if buf else chunk
            start = 0
            while True:
                m = _BOUNDARY.search(buf, scan)
                if m is None:
                    scan = max(start, len(buf) - 16)  # a boundary may straddle two chunks
                    break
                after = buf[m.end():m.end() + 1]
                if not after and not eof:
                    scan = m.start()  # an envelope name at the buffer's end: wait for more
                    break
                scan = m.end()
                if buf[m.end() - 3:m.end()] != b"MSH" and after.isalnum():
                    continue  # "BTSX...": not an envelope segment
                yield buf[start:m.start() + 1], False
                start = m.start() + 1
            buf, scan = buf[start:], scan - start
            if len(buf) > MAX_UNIT_BYTES:
                end = max(buf.rfind(b"\r"), buf.rfind(b"\n")) + 1 or len(buf)
                yield buf[:end], True
                buf, scan = buf[end:], 0
        if buf:
            yield buf, False

    def _lines(self, region: bytes) -> list[bytes]:
        """The region's non-empty lines (framing removed), counting line ends and MLLP bytes."""
        if self.first_region:
            self.first_region = False
            if region.startswith(BOM):
                region = region[3:]
                self.notes["byte order mark"] = None
                self.encodings["utf-8"] = None
        lines = region.splitlines()
        crlf = region.count(b"\r\n")
        if crlf:
            self.ends["CRLF"] += crlf
        framed = b"\x0b" in region or b"\x1c" in region
        cr = region.count(b"\r") - crlf - (region.count(b"\x1c\r") if framed else 0)
        if cr:
            self.ends["CR"] += cr
        if (lf := region.count(b"\n") - crlf) > 0:
            self.ends["LF"] += lf
        if framed:
            self.notes["MLLP framing"] = None
            opened, closed = region.rfind(b"\x0b"), region.rfind(b"\x1c")
            self.mllp_open = opened > closed
            lines = _contents(lines)
        return [line for line in lines if line and not line.isspace()]

    # -- units

    def units(self) -> Iterator[Unit]:
        lead = b""
        pending: _Message | None = None
        for region, cut in self.regions():
            first_line = self.number + 1
            lines = self._lines(region)
            self.number += len(lines)
            if pending is not None:
                pending.eof = False
            name = lines[0][:3] if lines else b""
            if cut:
                if pending is not None:
                    yield from self._message(pending)
                    pending = None
                self.names[b"oversized"] += 1
                yield Rejected(next(self.seqs), Position(self.fname, first_line), "record",
                               "unit too large: no end within the size limit", lead + region)
                lead = b""
            elif name == b"MSH":
                self.names.update([line[:3] for line in lines])
                if pending is not None:
                    yield from self._message(pending)
                pending, lead = _Message(region, lead, lines, first_line, self.mllp_open), b""
            elif (name in _ENVELOPE and not lines[0][3:4].isalnum()
                  and region.lstrip(BOM + b"\x0b")[:3] == name):
                self.notes["batch envelope"] = None
                self.names[name] += 1
                head, rest = _split_first_line(region)
                if name in (b"BTS", b"FTS") and pending is not None:
                    pending.tail += head
                    if len(lines) == 1:
                        pending.tail += rest
                        continue
                    yield from self._message(pending)
                    pending, region, first_line = None, rest, first_line + 1
                else:
                    if pending is not None:
                        yield from self._message(pending)
                        pending = None
                    lead += head
                    if len(lines) == 1:
                        lead += rest
                        continue
                    region, first_line = rest, first_line + 1
                yield from self._junk(lead + region, first_line)
                lead = b""
            elif lines:
                if pending is not None:
                    yield from self._message(pending)
                    pending = None
                yield from self._junk(lead + region, first_line)
                lead = b""
            else:
                lead += region
        if pending is not None:
            yield from self._message(pending)

    def _junk(self, raw: bytes, line: int) -> Iterator[Unit]:
        self.names[b"junk"] += 1
        yield Rejected(next(self.seqs), Position(self.fname, line), "record",
                       "text outside any message", raw)

    def _message(self, msg: _Message) -> Iterator[Unit]:
        self.messages += 1
        label = f"message {self.messages}"
        segments, line0 = msg.segments, msg.first_line
        everything = msg.lead + msg.region + msg.tail
        if msg.eof and (msg.mllp_open or (
                msg.region.rstrip(b" \t\x0b")[-1:] not in (b"\r", b"\n", b"\x1c")
                and not _complete_tail(segments[-1], segments[0][3:4]))):
            self.names[b"truncated"] += 1
            yield Rejected(next(self.seqs), Position(self.fname, line0, label), "record",
                           "truncated: the file ends inside this message", everything)
            return
        cr_only = False
        try:
            d, finess, anomalies, texts, text = self._header(segments)
            bad = _malformed(d, text)
            if bad and b"\r" in msg.region and msg.region.count(b"\n") > msg.region.count(b"\r\n"):
                try:  # a line feed typed inside a field of a CR-terminated message?
                    alternative = self._header(_nonblank(_raw_lines(msg.region, True)))
                except _PARSE_ERRORS:
                    alternative = None
                if alternative is not None and not _malformed(alternative[0], alternative[4]):
                    d, finess, anomalies, texts, text = alternative
                    anomalies.append(Anomaly("segment", "line feed inside a segment kept as a "
                                             "line break (line numbers approximate)"))
                    bad, cr_only = set(), True
            pids = [i for i, t in enumerate(texts) if t[:3] == "PID" and i not in bad]
            if not pids:
                raise InvalidRecord("PID", "message without PID segment")
            for i in range(1, pids[0]):
                if i in bad:
                    raise _err("segment", "malformed segment", "segment", line0 + i)
                if texts[i][:3] in ("ORC", "OBR", "OBX"):
                    raise _err("PID", "order or result before the PID segment", texts[i][:3],
                               line0 + i)
        except _PARSE_ERRORS as e:
            field, reason, where = _explain(e)
            segment = f"{label}, {where}" if where else label
            yield Rejected(next(self.seqs), Position(self.fname, line0, segment), field, reason,
                           everything)
            return
        raws = [everything] if len(pids) == 1 else _group_raws(msg, pids, cr_only)
        bounds = [*pids, len(texts)]
        for k, p in enumerate(pids):
            group_label = label if len(pids) == 1 else f"{label}, patient {k + 1}"
            line = line0 if k == 0 else line0 + p
            x = _Ctx(d, finess)
            x.anomalies += anomalies
            try:
                wrong = min((i for i in bad if p <= i < bounds[k + 1]), default=None)
                if wrong is not None:
                    raise _err("segment", "malformed segment", "segment", line0 + wrong)
                record, source = _group(texts[p:bounds[k + 1]], line0 + p, x)
            except _PARSE_ERRORS as e:
                field, reason, where = _explain(e)
                segment = f"{group_label}, {where}" if where else group_label
                yield Rejected(next(self.seqs), Position(self.fname, line, segment), field,
                               reason, raws[k])
                continue
            yield Parsed(next(self.seqs), Position(self.fname, line, group_label), record,
                         sha256(raws[k]), source, tuple(x.anomalies))

    def _header(self, segments: list[bytes]
                ) -> tuple[_Delims, str | None, list[Anomaly], list[str], str]:
        """Delimiters, MSH-4 FINESS, header anomalies, the decoded segments and text."""
        head = segments[0].decode("latin-1")
        fs, cs, rs, esc, ss = _separators(head)
        if fs + cs + rs + esc + ss != "|^~\\&":
            self.notes["non-standard delimiters"] = None
        parts = _pad(head.split(fs), 18)
        kind = parts[8].split(cs)
        if kind[0].strip().upper() != "ORU" or _c(kind, 1).strip().upper() not in ("R01", ""):
            raise InvalidRecord("MSH-9", "not an ORU^R01 message")
        anomalies = []
        version = parts[11].split(cs)[0].strip()
        self.versions[version or "unknown"] = None
        if version not in ("2.3", "2.3.1", "2.4", "2.5", "2.5.1"):
            anomalies.append(Anomaly("MSH-12", "version outside 2.3 to 2.5.1"))
        charset, known = _charset(parts[17].split(rs)[0].split(cs)[0])
        if not known:
            anomalies.append(Anomaly("MSH-18", "unknown character set: detected instead"))
        text, codec, label = _decode(b"\r".join(segments), charset)
        if charset == "utf-8" and codec != "utf-8" and label != "ascii":
            anomalies.append(Anomaly("MSH-18", "not valid UTF-8 as declared: read as CP1252"))
        self.encodings[label] = None
        escapes = bool(esc) and text.find(esc, head.find(fs, 4) + 1) > 0  # past MSH-2 itself
        d = _delims(fs, cs, rs, esc if escapes else "", ss, codec)
        texts = text.split("\r")
        hd = _pad(texts[0].split(fs), 4)[3].split(cs)
        finess = next((v for v in (d.u(_c(hd, 1)).strip(), d.u(hd[0]).strip())
                       if _FINESS.fullmatch(v)), None)
        return d, finess, anomalies, texts, text

    def update_stats(self) -> None:
        st = self.stats
        labels = [e for e in self.encodings if e != "ascii"]
        if len(labels) > 1:
            st.notes.append("character sets: " + ", ".join(labels))
        st.encoding = (labels[0] if len(labels) == 1 else "mixed" if labels
                       else "ascii" if self.encodings else None)
        st.line_ending = line_ending_label(self.ends)  # keys, even a count summed to 0
        st.version = ", ".join(self.versions) or None
        st.segments.update({k.decode("ascii"): v for k, v in self.names.items()
                            if _SEGMENT_NAME.fullmatch(k) or k in _OWN_COUNTS})
        st.notes.extend(self.notes)


def _group_raws(msg: _Message, pids: list[int], cr_only: bool) -> list[bytes]:
    """Raw bytes of each PID group: the first with everything before it, the others
    with a copy of the MSH line so that they can be re-read alone."""
    lines = _raw_lines(msg.region, cr_only)
    starts: list[int] = []
    index, wanted = -1, set(pids)
    for i, line in enumerate(_contents([r.rstrip(b"\r\n") for r in lines])):
        if line and not line.isspace():
            index += 1
            if index in wanted:
                starts.append(i)
    starts.append(len(lines))
    msh = lines[0]
    out = [msg.lead + b"".join(lines[:starts[1]])]
    out += [msh + b"".join(lines[starts[k]:starts[k + 1]]) for k in range(1, len(pids))]
    out[-1] += msg.tail
    return out


def _explain(e: Exception) -> tuple[str, str, str | None]:
    if isinstance(e, InvalidRecord):
        return e.field, e.reason, e.position
    return "record", f"malformed message ({type(e).__name__})", None


def sniff(head: bytes) -> bool:
    """True when the first bytes hold an MSH (or FHS/BHS) segment with its delimiters."""
    head = head[:4096]
    if head.startswith(BOM):
        head = head[3:]
    return _SNIFF.search(head) is not None


def read(stream: BinaryIO, name: str, stats: ReadStats | None = None) -> Iterator[Unit]:
    """Stream the messages (PID groups) of an HL7 v2 file as `Parsed` / `Rejected` units."""
    reader = _Reader(stream, name, stats if stats is not None else ReadStats())
    try:
        yield from reader.units()
    finally:
        reader.update_stats()
