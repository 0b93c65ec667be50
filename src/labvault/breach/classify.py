"""Which special categories of health data, and which identifiers, a patient's records expose.

Pure, no I/O. Breach scoping must say per patient whether art. 9 data that makes a notice urgent
was exposed. Comments are classified when stored (the findings sealed with them), so scoping need
not decrypt every comment.

Results: :func:`classify_result` unions the categories of the LOINC code (``lexicon.LOINC``, each
code sourced there) and of the words of the label (and of the code, for a local system). Never
negated, value not read: a negative HIV serology still reveals an HIV test, and DPOs treat the
fact of the test as special-category data.

Free text: :func:`classify_text` matches French terms (``lexicon.TERMS``) on normalised words
(lower case, no accents, "β" read "beta", letters and digits split), longest first. "Test" terms
(an analysis, agent or drug: "VIH", "hCG", "lithium") always count: "sérologie VIH négative" is
HIV data. "Condition" terms ("cancer", "enceinte", "IVG") are cancelled by a cue ("pas", "non",
"sans", "ni", "aucun", "absence", "jamais") among the 4 words before, or "négatif", "exclu",
"absent", "écarté" among the 2 after, in the same clause (ended by . , ; : ! ? ( ) "mais") and not
across another term: "pas de cancer ni de métastase" cancels both, "absence de métastase du
cancer" the first only; "test de grossesse négatif" counts, "patiente non enceinte" does not.
Not handled: double negation, "ne ... plus", hypotheses ("suspicion de" counts: the safer
error), history ("antécédent de"), cues further away, misspellings, words missing from the
lexicon, other languages (bar a few English test names), attachments, result values.

Identifiers are reported by kind ("nir", "phone", "email", "iban"), never by value. A NIR counts
when it passes ``validate_nir`` (key ``97 - n mod 97`` as in ``stdnum.fr.nir``, sex digit,
month) *and* a context word ("NIR", "n° sécu", "sécurité sociale", "INS", "carte vitale",
"immatriculation"...) is among the 6 words around it: a random 15-digit number passes the key
with probability exactly 1/100 (one valid key among the 100 endings of any 13-digit body; not
1/97 nor 1/181) and all of ``validate_nir`` with ~1/219 (0.6 x 0.76 / 100), so without context
one tube barcode in ~220 would be a "NIR". Phones: French (0X XX XX XX XX, +33, 0033). IBANs:
``stdnum.iban`` (mod 97, national format). ``labvault.leakcheck`` searches for known values, not
patterns: there is nothing to share but ``domain.normalize.strip_accents``, used by both.
"""

from __future__ import annotations

import re
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType

from stdnum import iban as stdnum_iban

from labvault.breach import lexicon as lx
from labvault.domain.identifiers import validate_nir
from labvault.domain.normalize import strip_accents
from labvault.domain.records import PatientRecord
from labvault.errors import InvalidRecord

__all__ = ["IDENTIFIER_KINDS", "RecordFindings", "SpecialCategory", "TextFindings", "classify_record",
           "classify_result", "classify_text"]


class SpecialCategory(StrEnum):
    """Special categories of health data whose exposure makes a breach notice urgent."""

    HIV = "hiv"
    HEPATITIS = "hepatitis"
    STI = "sti"  # sexually transmitted infections other than HIV
    PREGNANCY = "pregnancy"  # pregnancy, its tests and its termination
    CANCER = "cancer"
    GENETIC = "genetic"
    TOXICOLOGY = "toxicology"  # drugs of abuse, addiction
    PSYCHIATRIC = "psychiatric"


IDENTIFIER_KINDS = frozenset({"nir", "phone", "email", "iban"})

_BREAK = "|"
_DECIMAL = re.compile(r"(?<=\d)[.,](?=\d)")
_PUNCT = re.compile(r"[.;:!?,()\[\]{}\n\r]+")
_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")
_OTHER = re.compile(r"[^a-z0-9|]+")
_CLAUSE_WORDS = frozenset(lx.CLAUSE_BREAKS)


def _normalize(text: str) -> str:
    """Words separated by one space, clause breaks as ``|``: "Pré-IVG, β-hCG" -> "pre ivg | beta hcg"."""
    s = strip_accents(text.replace("β", " beta ").replace("ϐ", " beta ")).lower()
    s = _OTHER.sub(" ", _LETTER_DIGIT.sub(" ", _PUNCT.sub(" | ", _DECIMAL.sub(" ", s))))
    out: list[str] = []
    for word in s.split():
        word = _BREAK if word in _CLAUSE_WORDS else word
        if word != _BREAK or (out and out[-1] != _BREAK):
            out.append(word)
    return " ".join(out)


def _pattern(phrase: str) -> tuple[str, str]:
    """(normalised phrase, regex body); a trailing ``*`` allows any ending of the last word."""
    norm = _normalize(phrase.rstrip("*"))
    if not norm or _BREAK in norm:
        raise ValueError("lexicon phrase is empty or holds punctuation that breaks clauses")
    return norm, re.escape(norm) + ("[a-z0-9]*" if phrase.endswith("*") else "")


def _bounded(bodies: list[str]) -> str:
    return r"(?<![a-z0-9])(?:" + "|".join(bodies) + r")(?![a-z0-9])"


@dataclass(frozen=True, slots=True)
class _Term:
    categories: frozenset[SpecialCategory]
    negatable: bool
    unless: re.Pattern[str] | None


def _compile_terms() -> tuple[re.Pattern[str], list[_Term]]:
    found: dict[str, tuple[str, set[SpecialCategory], set[str]]] = {}
    for category, kinds in lx.TERMS.items():
        for kind, phrases in kinds.items():
            for phrase in phrases:
                norm, body = _pattern(phrase)
                entry = found.setdefault(body, (norm, set(), set()))
                entry[1].add(SpecialCategory(category))
                entry[2].add(kind)
    unless = {_pattern(k)[1]: v for k, v in lx.UNLESS.items()}
    if unknown := unless.keys() - found.keys():
        raise ValueError(f"UNLESS names {len(unknown)} phrase(s) absent from TERMS")
    order = sorted(found, key=lambda body: (-len(found[body][0]), body))  # longest first
    terms = [_Term(frozenset(found[b][1]), found[b][2] == {lx.CONDITION},
                   re.compile(_bounded([_pattern(p)[1] for p in unless[b]])) if b in unless else None)
             for b in order]
    named = [f"{body}(?P<t{i}>)" for i, body in enumerate(order)]  # literal first: fast skip
    return re.compile(_bounded(named)), terms


_TERMS_RE, _TERMS = _compile_terms()
_LOINC = {code: frozenset(SpecialCategory(c) for c, codes in lx.LOINC.items() if code in codes)
          for codes in lx.LOINC.values() for code in codes}
_LOINC_SYSTEMS = frozenset(s.lower() for s in lx.LOINC_SYSTEMS)
_NEG_BEFORE = frozenset(_normalize(w) for w in lx.NEGATION_BEFORE)
_NEG_AFTER = frozenset(_normalize(w) for w in lx.NEGATION_AFTER)
_NIR_CONTEXT_RE = re.compile(_bounded([_pattern(p)[1] for p in lx.NIR_CONTEXT]))


def _categories(norm: str, negation: bool) -> set[SpecialCategory]:
    """Categories of the terms found in a normalised text (linear in its length)."""
    words, spaces = norm.split(" "), [i for i, ch in enumerate(norm) if ch == " "]
    blockers: dict[int, tuple[list[int], list[int]]] = {}  # word starts and ends, both sorted
    hits = []
    for m in _TERMS_RE.finditer(norm):
        index = int(m.lastgroup[1:])  # type: ignore[index]
        term, start, end = _TERMS[index], bisect_left(spaces, m.start()), bisect_left(spaces, m.end()) + 1
        if term.unless is not None:
            if index not in blockers:
                found_at = [(bisect_left(spaces, b.start()), bisect_left(spaces, b.end()) + 1)
                            for b in term.unless.finditer(norm)]
                blockers[index] = ([b for b, _ in found_at], [e for _, e in found_at])
            starts, ends = blockers[index]
            k = bisect_right(ends, start - lx.UNLESS_WINDOW)  # first blocker ending near or after
            if k < len(starts) and starts[k] < end + lx.UNLESS_WINDOW:
                continue
        hits.append((start, end, term))
    found: set[SpecialCategory] = set()
    for i, (start, end, term) in enumerate(hits):
        if negation and term.negatable:
            low = max(start - lx.NEGATION_BEFORE_WINDOW, hits[i - 1][1] if i else 0)
            high = min(end + lx.NEGATION_AFTER_WINDOW, hits[i + 1][0] if i + 1 < len(hits) else len(words))
            if _cue(words, range(start - 1, low - 1, -1), _NEG_BEFORE) or _cue(words, range(end, high),
                                                                                  _NEG_AFTER):
                continue
        found |= term.categories
    return found


def _cue(words: list[str], positions: range, cues: frozenset[str]) -> bool:
    """Whether a cue comes before a clause break, walking ``positions``."""
    for j in positions:
        if words[j] in cues or words[j] == _BREAK:
            return words[j] != _BREAK
    return False


@lru_cache(maxsize=4096)
def classify_result(code_system: str, code: str, label: str) -> frozenset[SpecialCategory]:
    """Special categories of a result, from its LOINC code and the words of its label."""
    code, found = (code or "").strip(), set()
    if (code_system or "").strip().lower() in _LOINC_SYSTEMS:
        found |= _LOINC.get(code, frozenset())
        text = label or ""
    else:  # a local code often says what the test is ("BRCA1", "VIH")
        text = f"{code}\n{label or ''}"
    return frozenset(found | _categories(_normalize(text), negation=False))


@dataclass(frozen=True, slots=True)
class TextFindings:
    """What a free text reveals: categories and kinds of identifiers, never a value."""

    special: frozenset[SpecialCategory] = frozenset()
    identifiers: frozenset[str] = frozenset()


_SEP = r"[ .\-\u00a0\u202f]"
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:[ \-]?[A-Za-z0-9]){11,32}")
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+'-])[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                    r"\.[A-Za-z]{2,63}")
_NIR = re.compile(rf"(?<![0-9A-Za-z])[123478](?:{_SEP}?[0-9]){{4}}{_SEP}?(?:[0-9]{_SEP}?[0-9]|2[ABab])"
                  rf"(?:{_SEP}?[0-9]){{8}}(?![0-9A-Za-z])")
_PHONE = re.compile(rf"(?<![\w+])(?:(?:\+|00){_SEP}?33{_SEP}?(?:\(0\){_SEP}?)?[1-9]|0[1-9])"
                    rf"(?:{_SEP}?[0-9]{{2}}){{4}}(?![0-9])")


def _mask(text: str, start: int, end: int) -> str:
    return text[:start] + "#" * (end - start) + text[end:]


def _iban_end(text: str, m: re.Match[str]) -> int | None:
    """End of the longest valid IBAN starting at ``m`` (the regex may overrun into text)."""
    chars = [(m.start() + i, c) for i, c in enumerate(m.group()) if c.isalnum()]
    for n in range(len(chars), 14, -1):
        if stdnum_iban.is_valid("".join(c for _, c in chars[:n])):
            return chars[n - 1][0] + 1
    return None


def _nir_context(text: str, start: int, end: int) -> bool:
    span = 12 * lx.NIR_CONTEXT_WORDS
    before = text[max(0, start - span):start].split()[1 if start > span else 0:]
    after = text[end:end + span].split()[: -1 if end + span < len(text) else None]
    words = lx.NIR_CONTEXT_WORDS
    return any(_NIR_CONTEXT_RE.search(_normalize(" ".join(part)).replace(_BREAK, " "))
               for part in (before[-words:], after[:words]))


def _identifiers(text: str) -> frozenset[str]:
    kinds: set[str] = set()
    for m in _IBAN.finditer(text):
        if (end := _iban_end(text, m)) is not None:
            kinds.add("iban")
            text = _mask(text, m.start(), end)
    for m in _EMAIL.finditer(text) if "@" in text else ():
        kinds.add("email")
        text = _mask(text, m.start(), m.end())
    for m in _NIR.finditer(text):
        try:
            validate_nir(re.sub(_SEP, "", m.group()))
        except InvalidRecord:
            continue
        if _nir_context(text, m.start(), m.end()):
            kinds.add("nir")
        text = _mask(text, m.start(), m.end())  # a valid-key number is not a phone either
    if _PHONE.search(text):
        kinds.add("phone")
    return frozenset(kinds)


def classify_text(text: str) -> TextFindings:
    """Special categories (negation-aware, see the module docstring) and identifier kinds."""
    text = text or ""
    return TextFindings(frozenset(_categories(_normalize(text), negation=True)), _identifiers(text))


@dataclass(frozen=True, slots=True, repr=False)
class RecordFindings:
    """Per patient: categories, how many results and comments carry each, and which (by id)."""

    patient_id: uuid.UUID
    special: frozenset[SpecialCategory]
    counts: Mapping[SpecialCategory, int]
    result_ids: Mapping[SpecialCategory, frozenset[uuid.UUID]]
    comment_ids: Mapping[SpecialCategory, frozenset[uuid.UUID]]
    identifiers: frozenset[str]
    identifier_comment_ids: Mapping[str, frozenset[uuid.UUID]]
    results_scanned: int
    comments_scanned: int

    def __repr__(self) -> str:
        counts = ", ".join(f"{c.value}={self.counts[c]}" for c in sorted(self.counts))
        return (f"RecordFindings(patient_id={self.patient_id}, special=[{counts}], "
                f"identifiers={sorted(self.identifiers)}, results={self.results_scanned}, "
                f"comments={self.comments_scanned})")

    __str__ = __repr__


def _frozen(index: dict[str, set[uuid.UUID]]) -> Mapping:
    return MappingProxyType({k: frozenset(v) for k, v in sorted(index.items())})


def classify_record(record: PatientRecord) -> RecordFindings:
    """Walk orders, results and comments (attachments and result values are not read)."""
    by_result: dict[SpecialCategory, set[uuid.UUID]] = {}
    by_comment: dict[SpecialCategory, set[uuid.UUID]] = {}
    by_identifier: dict[str, set[uuid.UUID]] = {}
    results = comments = 0
    for order in record.orders:
        notes = list(order.comments)
        for result in order.results:
            results += 1
            notes += result.comments
            for cat in classify_result(result.code_system, result.code, result.label):
                by_result.setdefault(cat, set()).add(result.id)
        for note in notes:
            comments += 1
            found = classify_text(note.text)
            for cat in found.special:
                by_comment.setdefault(cat, set()).add(note.id)
            for kind in found.identifiers:
                by_identifier.setdefault(kind, set()).add(note.id)
    special = frozenset(by_result.keys() | by_comment.keys())
    counts = {c: len(by_result.get(c, ())) + len(by_comment.get(c, ())) for c in sorted(special)}
    return RecordFindings(
        patient_id=record.id, special=special, counts=MappingProxyType(counts),
        result_ids=_frozen(by_result), comment_ids=_frozen(by_comment),
        identifiers=frozenset(by_identifier), identifier_comment_ids=_frozen(by_identifier),
        results_scanned=results, comments_scanned=comments)
