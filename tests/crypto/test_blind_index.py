"""Tests of labvault.crypto.blind: keyed, truncated HMAC entries over normalised values."""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labvault.crypto.blind import INDEX_BYTES, NAME_BIRTH_INDEX, NIR_INDEX, BlindIndex
from labvault.crypto.keys import LocalKeyFile
from labvault.domain.normalize import name_birth_key, normalize_name, normalize_nir
from labvault.secret import Secret

KEY_A = Secret(bytes(range(32)))
KEY_B = Secret(bytes(range(1, 33)))

values = st.text(max_size=60)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> LocalKeyFile:
    return LocalKeyFile.create(tmp_path_factory.mktemp("blind") / "master.key")


def test_matches_independent_hmac_sha256_truncated() -> None:
    """Recomputed with the standard library, not with the module's own code path."""
    value = "DUPONT|1985-05-12"
    expected = hmac.new(KEY_A.reveal(), value.encode("utf-8"), hashlib.sha256).digest()[:16]
    assert BlindIndex("x", KEY_A).compute(value) == expected


@given(value=values)
def test_is_deterministic(value: str) -> None:
    a = BlindIndex(NIR_INDEX, KEY_A).compute(value)
    assert BlindIndex(NIR_INDEX, KEY_A).compute(value) == a
    assert BlindIndex(NIR_INDEX, Secret(bytes(range(32)))).compute(value) == a


@given(value=values)
def test_output_is_16_bytes(value: str) -> None:
    out = BlindIndex(NIR_INDEX, KEY_A).compute(value)
    assert isinstance(out, bytes)
    assert len(out) == INDEX_BYTES == 16


@given(value=values)
def test_different_keys_give_different_entries(value: str) -> None:
    assert BlindIndex("i", KEY_A).compute(value) != BlindIndex("i", KEY_B).compute(value)


@given(value=values)
def test_random_keys_give_different_entries(value: str) -> None:
    k1, k2 = Secret(os.urandom(32)), Secret(os.urandom(32))
    assert BlindIndex("i", k1).compute(value) != BlindIndex("i", k2).compute(value)


@given(a=values, b=values)
def test_different_values_give_different_entries(a: str, b: str) -> None:
    index = BlindIndex("i", KEY_A)
    assert (index.compute(a) == index.compute(b)) == (a == b)


def test_entry_does_not_contain_the_value() -> None:
    nir = "185057800608491"
    out = BlindIndex(NIR_INDEX, KEY_A).compute(nir)
    assert nir.encode() not in out
    assert out != hashlib.sha256(nir.encode()).digest()[:16]  # keyed, not a plain hash


@given(value=values)
def test_indexes_keyed_from_one_provider_differ_by_name(provider: LocalKeyFile, value: str) -> None:
    nir = BlindIndex(NIR_INDEX, provider.index_key(NIR_INDEX))
    name = BlindIndex(NAME_BIRTH_INDEX, provider.index_key(NAME_BIRTH_INDEX))
    assert nir.compute(value) != name.compute(value)


def test_provider_index_keys_are_stable_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    first = BlindIndex(NIR_INDEX, LocalKeyFile.create(path).index_key(NIR_INDEX)).compute("185057800608491")
    again = BlindIndex(NIR_INDEX, LocalKeyFile.open(path).index_key(NIR_INDEX)).compute("185057800608491")
    assert first == again


def test_repr_does_not_show_key() -> None:
    index = BlindIndex(NIR_INDEX, KEY_A)
    text = repr(index)
    assert text == f"BlindIndex({NIR_INDEX!r})"
    assert KEY_A.reveal().hex() not in text
    assert repr(KEY_A.reveal()) not in text


# -- normalisation-equivalent spellings give the same entry -------------------------------------
WORDS = ["Hélène", "Le Goff", "Dupont", "Lefèvre", "Noël", "François", "Çelik", "Mañé", "D'Arc",
         "Müller", "Saint-Étienne", "Ôtis", "Anaïs", "Bœuf", "Lætitia", "Zoé", "Ange-Marie"]
ACCENTS = {
    "a": "aàâäáã", "e": "eéèêë", "i": "iîïí", "o": "oôöóõ", "u": "uùûüú", "c": "cç", "n": "nñ",
    "y": "yÿý",
}
SEPARATORS = st.text(alphabet=" -'’\t", min_size=1, max_size=4)


@st.composite
def spelling_of(draw: st.DrawFn, words: list[str]) -> str:
    """One way of writing `words`: any case, any accents, any separators, NFC or NFD."""
    out = [draw(st.text(alphabet=" \t", max_size=2))]
    for i, word in enumerate(words):
        if i:
            out.append(draw(SEPARATORS))
        for ch in word:
            base = unicodedata.normalize("NFD", ch)[0]
            options = ACCENTS.get(base.lower(), base.lower())
            if ch in "œæŒÆ":
                options = {"œ": "œŒ", "Œ": "œŒ", "æ": "æÆ", "Æ": "æÆ"}[ch]
            if ch in "-'":
                options = "-' "
            variant = draw(st.sampled_from(options)) if ch != " " else draw(SEPARATORS)
            out.append(variant.upper() if draw(st.booleans()) else variant)
    out.append(draw(st.text(alphabet=" \t", max_size=2)))
    text = "".join(out)
    form = draw(st.sampled_from(["NFC", "NFD"]))
    return unicodedata.normalize(form, text)


@st.composite
def two_spellings(draw: st.DrawFn) -> tuple[str, str]:
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))
    return draw(spelling_of(words)), draw(spelling_of(words))


@given(pair=two_spellings())
def test_equivalent_spellings_give_same_name_entry(pair: tuple[str, str]) -> None:
    a, b = pair
    index = BlindIndex(NAME_BIRTH_INDEX, KEY_A)
    assert normalize_name(a) == normalize_name(b)
    assert index.compute(normalize_name(a)) == index.compute(normalize_name(b))
    born = date(1985, 5, 12)
    assert index.compute(name_birth_key(a, born)) == index.compute(name_birth_key(b, born))


@pytest.mark.parametrize(("a", "b"), [
    ("Hélène  LE-GOFF", "helene le goff"),
    ("D'ARC", "d’Arc"),
    ("Lefèvre", "LEFEVRE"),
    ("Bœuf", "BOEUF"),
    ("  Noël ", "NOEL"),
])
def test_known_equivalent_spellings(a: str, b: str) -> None:
    index = BlindIndex(NAME_BIRTH_INDEX, KEY_A)
    assert index.compute(normalize_name(a)) == index.compute(normalize_name(b))


def test_different_names_or_dates_give_different_entries() -> None:
    index = BlindIndex(NAME_BIRTH_INDEX, KEY_A)
    born = date(1985, 5, 12)
    assert index.compute(name_birth_key("Martin", born)) != index.compute(name_birth_key("Martine", born))
    assert index.compute(name_birth_key("Martin", born)) != index.compute(
        name_birth_key("Martin", date(1985, 5, 13)))
    assert index.compute(normalize_name("Le Goff")) != index.compute(normalize_name("Legoff"))


def test_nir_spellings_give_same_entry() -> None:
    index = BlindIndex(NIR_INDEX, KEY_A)
    spellings = ["2 85 05 2a 006 084 91", "2.85.05.2A.006.084.91", "285052A00608491", "2-85-05-2a-006-084-91"]
    entries = {index.compute(normalize_nir(s)) for s in spellings}
    assert len(entries) == 1
