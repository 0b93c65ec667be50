"""The special-category and identifier classifier of breach scoping (labvault.breach.classify)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.fr import nir as stdnum_nir

from labvault.breach import lexicon
from labvault.breach.classify import (
    IDENTIFIER_KINDS,
    SpecialCategory,
    TextFindings,
    classify_record,
    classify_result,
    classify_text,
)
from labvault.domain.identifiers import validate_nir
from labvault.synthetic import PANELS, POSITIVE_COMMENTS, SyntheticLab

S = SpecialCategory
NONE: frozenset[SpecialCategory] = frozenset()


def _nir(body: str, spaced: bool = True) -> str:
    n = body + stdnum_nir.calc_check_digits(body)
    return f"{n[0]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:10]} {n[10:13]} {n[13:]}" if spaced else n


VALID_NIR = _nir("1850578006084")  # 1 85 05 78 006 084 91
VALID_IBAN_FR = "FR76 3000 6000 0112 3456 7890 189"
VALID_IBAN_DE = "DE89370400440532013000"


def test_category_values_are_stable() -> None:
    assert [c.value for c in S] == ["hiv", "hepatitis", "sti", "pregnancy", "cancer", "genetic",
                                    "toxicology", "psychiatric"]
    assert set(lexicon.LOINC) == set(lexicon.TERMS) == {c.value for c in S}


@pytest.mark.parametrize(("category", "code"),
                         [(cat, code) for cat, codes in lexicon.LOINC.items() for code in codes])
def test_every_mapped_loinc_code_fires_on_its_category(category: str, code: str) -> None:
    assert classify_result("LN", code, "") == {S(category)}
    assert classify_result("http://loinc.org", f" {code} ", "") == {S(category)}


def test_a_loinc_looking_code_of_a_local_system_is_not_trusted() -> None:
    assert classify_result("LOCAL", "56888-1", "") == NONE
    assert classify_result("LN", "718-7", "Hémoglobine") == NONE


def test_synthetic_panels_are_classified_by_code_and_label() -> None:
    expected = {"56888-1": {S.HIV}, "16128-1": {S.HEPATITIS}, "2106-3": {S.PREGNANCY},
                "2857-1": {S.CANCER}, "10334-1": {S.CANCER}, "BRCA1": {S.GENETIC}}
    for *_, tests in PANELS:
        for t in tests:
            assert classify_result(t.system, t.code, t.label) == expected.get(t.code, set()), t.code


@pytest.mark.parametrize(("label", "category"), [
    ("Sérologie VIH 1/2", S.HIV), ("Charge virale VIH-1 (copies/mL)", S.HIV), ("HIV1 RNA", S.HIV),
    ("Ag HBs", S.HEPATITIS), ("AgHBs qualitatif", S.HEPATITIS), ("Ac anti-VHC", S.HEPATITIS),
    ("Sérologie hépatite B", S.HEPATITIS), ("ARN du VHC", S.HEPATITIS),
    ("Chlamydia trachomatis (PCR)", S.STI), ("Gonocoque PCR", S.STI), ("TPHA", S.STI),
    ("VDRL quantitatif", S.STI), ("Sérologie syphilis", S.STI),
    ("Béta-hCG plasmatique", S.PREGNANCY), ("β-HCG quantitatif", S.PREGNANCY), ("bHCG", S.PREGNANCY),
    ("Test de grossesse", S.PREGNANCY), ("hCG urinaire", S.PREGNANCY),
    ("PSA libre", S.CANCER), ("CA 15-3", S.CANCER), ("CA19-9", S.CANCER), ("CA125", S.CANCER),
    ("ACE", S.CANCER), ("Antigène carcino-embryonnaire", S.CANCER), ("Marqueurs tumoraux", S.CANCER),
    ("Caryotype constitutionnel", S.GENETIC), ("Recherche BRCA1/BRCA2", S.GENETIC),
    ("Étude génétique", S.GENETIC), ("Mutation du facteur V Leiden", S.GENETIC),
    ("Cannabis (urines)", S.TOXICOLOGY), ("Opiacés urinaires", S.TOXICOLOGY),
    ("Cocaïne et métabolites", S.TOXICOLOGY), ("Recherche de toxiques", S.TOXICOLOGY),
    ("Lithium", S.PSYCHIATRIC), ("Lithémie", S.PSYCHIATRIC), ("Clozapine + norclozapine", S.PSYCHIATRIC),
])
def test_french_labels_of_local_codes(label: str, category: SpecialCategory) -> None:
    assert classify_result("LOCAL", "X1", label) == {category}


@pytest.mark.parametrize("label", [
    "Hémoglobine", "Leucocytes", "Hématies", "Sodium", "Potassium (héparinate de lithium)",
    "Créatinine", "Glycémie à jeun", "Hémoglobine glyquée (HbA1c)", "ALAT (TGP)", "Gamma-GT",
    "Cholestérol HDL", "TSH", "Protéine C réactive (CRP)", "Ferritine", "ECA",
    "Enzyme de conversion de l'angiotensine", "ACE (enzyme de conversion)",
    "Enzyme de conversion de l'angiotensine (ACE)",
])
def test_routine_labels_and_angiotensin_converting_enzyme_are_not_special(label: str) -> None:
    assert classify_result("LOCAL", "X1", label) == NONE


def test_a_local_code_is_read_too() -> None:
    assert classify_result("LOCAL", "BRCA2", "Séquençage") == {S.GENETIC}


@pytest.mark.parametrize(("text", "category"), [
    ("Patient séropositif, suivi trimestriel", S.HIV), ("Sous traitement antirétroviral", S.HIV),
    ("Charge virale VIH indétectable", S.HIV),
    ("Hépatite B chronique", S.HEPATITIS), ("Contrôle Ag HBs à 6 mois", S.HEPATITIS),
    ("Dépistage IST demandé", S.STI), ("Syphilis traitée en 2023", S.STI),
    ("Patiente enceinte de 12 SA", S.PREGNANCY), ("Bilan pré-IVG", S.PREGNANCY),
    ("Grossesse débutante, β-hCG à contrôler", S.PREGNANCY),
    ("Suivi chimiothérapie, cure n°3", S.CANCER), ("Métastases hépatiques connues", S.CANCER),
    ("Leucémie lymphoïde chronique", S.CANCER), ("Adressé par le service d'oncologie", S.CANCER),
    ("Lymphome en rémission", S.CANCER), ("Tumeur de la vessie opérée", S.CANCER),
    ("Résultats à transmettre au conseil génétique", S.GENETIC), ("Mutation BRCA2 familiale", S.GENETIC),
    ("Suivi en CSAPA, toxicomanie ancienne", S.TOXICOLOGY), ("Sous méthadone", S.TOXICOLOGY),
    ("Hospitalisé en psychiatrie", S.PSYCHIATRIC), ("Schizophrénie sous clozapine", S.PSYCHIATRIC),
    ("Trouble bipolaire, lithémie cible 0,8", S.PSYCHIATRIC),
])
def test_french_comments(text: str, category: SpecialCategory) -> None:
    assert classify_text(text).special == {category}


@pytest.mark.parametrize("text", [
    "À jeun depuis 12 h", "Hémolyse légère, interpréter avec prudence", "Prélèvement difficile",
    "Résultats à transmettre à sa fille", "Tube conservé dans l'enceinte réfrigérée",
    "Dépression médullaire post-greffe", "Dosage de l'ACE (enzyme de conversion de l'angiotensine)",
    "Prélevé sur tube hépariné au lithium", "Surveillance du bilan hépatique", "Gêne respiratoire",
    "Mutations de résistance du VHB",  # hepatitis only, not genetic
])
def test_comments_without_a_special_category(text: str) -> None:
    assert S.GENETIC not in classify_text(text).special
    if "VHB" not in text:
        assert classify_text(text).special == NONE


# The rule: a negation cancels only a condition ("pas de cancer"), never the mention of a test or
# an agent: "sérologie VIH négative" still reveals an HIV test, which is special-category data.
@pytest.mark.parametrize("text", [
    "Pas de cancer", "Absence de métastase", "Patiente non enceinte", "Pas de grossesse en cours",
    "Grossesse exclue", "Sans antécédent de cancer", "pas de signe de cancer",
    "Pas de cancer ni de métastase", "Aucune tumeur retrouvée", "cancer écarté",
])
def test_negated_conditions_do_not_count(text: str) -> None:
    assert classify_text(text).special == NONE


@pytest.mark.parametrize(("text", "expected"), [
    ("Sérologie VIH négative", {S.HIV}), ("VIH négatif", {S.HIV}), ("Pas de VIH détecté", {S.HIV}),
    ("Test de grossesse négatif", {S.PREGNANCY}), ("hCG négatif", {S.PREGNANCY}),
    ("Absence de métastase du cancer du sein", {S.CANCER}),  # one cue negates one term
    ("Pas de fièvre, cancer du sein évolutif", {S.CANCER}),  # the comma ends the negation
    ("Pas d'hyperthermie mais grossesse débutante", {S.PREGNANCY}),
    ("pas de signe clinique évident de cancer", {S.CANCER}),  # cue too far: counted (limit)
    ("Recherche BRCA1 : absence de variant pathogène", {S.GENETIC}),
])
def test_negation_does_not_cancel_tests_nor_reach_beyond_its_scope(text: str, expected: set) -> None:
    assert classify_text(text).special == expected


def _kinds(text: str) -> frozenset[str]:
    return classify_text(text).identifiers


@pytest.mark.parametrize("template", [
    "NIR : {}", "n° sécu {}", "Numéro de sécurité sociale {} à vérifier", "{} (carte Vitale)",
    "immatriculation {}", "INS {}", "matricule INS qualifié : {}",
])
def test_a_valid_nir_with_a_context_word_is_found(template: str) -> None:
    assert _kinds(template.format(VALID_NIR)) == {"nir"}
    assert _kinds(template.format(VALID_NIR.replace(" ", ""))) == {"nir"}


def test_the_same_digits_without_context_are_not_a_nir() -> None:
    assert _kinds(f"Recontrôle {VALID_NIR} demain") == frozenset()
    assert _kinds(f"Tube {VALID_NIR.replace(' ', '')}") == frozenset()
    assert _kinds("Instructions " + VALID_NIR.replace(" ", "")) == frozenset()  # not "INS"


def test_a_barcode_that_passes_the_key_is_not_a_nir_nor_a_phone() -> None:
    rng = random.Random(3)
    barcodes = []
    while len(barcodes) < 20:
        body = f"{rng.choice('1278')}{rng.randrange(10**12):012d}"
        if body[3:5] in {f"{m:02d}" for m in range(1, 13)}:
            barcodes.append(body + stdnum_nir.calc_check_digits(body))
    for code in barcodes:
        assert stdnum_nir.is_valid(code)
        validate_nir(code)  # passes every check a NIR can pass, yet has no context
        assert _kinds(f"Code-barres du tube {code}, centrifugé") == frozenset()


def test_a_nir_with_a_wrong_key_is_not_found_even_with_context() -> None:
    wrong = VALID_NIR[:-2] + ("00" if not VALID_NIR.endswith("00") else "01")
    assert _kinds(f"NIR : {wrong}") == frozenset()


def test_corsican_nir() -> None:
    assert _kinds(f"NIR {_nir('285022A123456', spaced=False)}") == {"nir"}


def test_one_random_fifteen_digit_number_in_a_hundred_passes_the_key() -> None:
    rng = random.Random(5)
    for _ in range(50):  # exactly one of the 100 endings of any body is its key
        body = f"{rng.randrange(10**13):013d}"
        assert sum(stdnum_nir.is_valid(f"{body}{k:02d}") for k in range(100)) == 1


@pytest.mark.parametrize("text", [
    "Rappeler au 06 12 34 56 78", "tél. 01.23.45.67.89", "joignable au 0612345678",
    "Fille : +33 6 12 34 56 78", "+33 (0)1 23 45 67 89", "0033 7 12 34 56 78", "au 04-78-12-34-56",
])
def test_french_phone_numbers(text: str) -> None:
    assert _kinds(text) == {"phone"}


@pytest.mark.parametrize("text", [
    "À jeun depuis 12 h", "Ordonnance du 12/03/2025", "cure n°2", "Dossier 2025-123456",
    "Valeur 06 12", "Code 123456789", "0612345678901",
])
def test_not_phone_numbers(text: str) -> None:
    assert _kinds(text) == frozenset()


def test_email_and_iban() -> None:
    assert _kinds("Résultats à envoyer à jean.dupont+labo@example.fr svp") == {"email"}
    assert _kinds(f"Remboursement sur {VALID_IBAN_FR} merci") == {"iban"}
    assert _kinds(f"IBAN {VALID_IBAN_DE}") == {"iban"}
    assert _kinds("IBAN FR76 3000 6000 0112 3456 7890 188") == frozenset()  # wrong check digits
    both = f"{VALID_NIR} NIR, tel 06 12 34 56 78, a@b.fr, {VALID_IBAN_FR}"
    assert _kinds(both) == IDENTIFIER_KINDS


def test_findings_never_carry_a_value() -> None:
    text = f"NIR {VALID_NIR}, 06 12 34 56 78, jean.dupont@example.fr, {VALID_IBAN_FR}, VIH+"
    found = classify_text(text)
    shown = repr(found) + str(found)
    for value in (VALID_NIR, VALID_NIR.replace(" ", ""), "06 12 34 56 78", "0612345678",
                  "jean.dupont", "example.fr", VALID_IBAN_FR, VALID_IBAN_FR.replace(" ", "")):
        assert value not in shown
    assert found == TextFindings(frozenset({S.HIV}), IDENTIFIER_KINDS)


WORDS = ["VIH", "pas", "de", "cancer", "non", "enceinte", "ACE", "enzyme", "NIR", "sécu", "06",
         "12", "34", "56", "78", "+33", "FR76", "3000", "@", "a", ".", ",", "lithium", "hépariné",
         "2A", "185057800608491", "négatif", "ni", "mais", "β-hCG", "IBAN", "é", "*", "(", ")"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300),
                 st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join)))
def test_random_text_never_raises_and_is_deterministic(text: str) -> None:
    first = classify_text(text)
    assert first == classify_text(text)
    assert first.identifiers <= IDENTIFIER_KINDS
    assert all(isinstance(c, SpecialCategory) for c in first.special)


def test_long_adversarial_texts_are_handled_in_linear_time() -> None:
    # each of these took seconds to minutes with a quadratic scan; together well under a second now
    assert classify_text("enzyme " * 20_000 + "ACE").special == NONE
    assert classify_text("ACE " + "mot " * 9 + "enzyme").special == {S.CANCER}  # blocker too far
    assert classify_text("ACE enzyme " * 20_000).special == NONE
    assert classify_text("a@" + "a." * 50_000).identifiers == frozenset()
    assert classify_text("a" * 200_000 + " pas de cancer, " * 10_000).special == NONE


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.text(max_size=20), st.text(max_size=120))
def test_random_results_never_raise(system: str, code: str, label: str) -> None:
    assert classify_result(system, code, label) == classify_result(system, code, label)


# One distinctive fragment of each synthetic comment template, and what it must reveal.
SYNTHETIC_COMMENTS = {
    "enceinte de": ({S.PREGNANCY}, False), "pré-IVG": ({S.PREGNANCY}, False),
    "chimiothérapie": ({S.CANCER}, False), "antirétroviral": ({S.HIV}, False),
    "sofosbuvir": ({S.HEPATITIS}, False), "lithium": ({S.PSYCHIATRIC}, False),
    "sertraline": ({S.PSYCHIATRIC}, False), "psychiatrie": ({S.PSYCHIATRIC}, False),
    "sa fille": (set(), True), "Prévenir le conjoint": (set(), True), "sous tutelle": (set(), True),
    "joignable": (set(), True), "À jeun": (set(), False), "anticoagulant": (set(), False),
    "prostatectomie": ({S.CANCER}, False), "Renouvellement": (set(), False),
    "second prélèvement": (set(), False), "Hémolyse": (set(), False), "téléphonée": (set(), False),
    "recontrôler": (set(), False), "traité pour un cancer": ({S.CANCER}, False),
    "Contexte de grossesse": ({S.PREGNANCY}, False), "après IVG": ({S.PREGNANCY}, False),
    POSITIVE_COMMENTS["56888-1"][:20]: ({S.HIV}, False),
    POSITIVE_COMMENTS["16128-1"][:20]: ({S.HEPATITIS}, False),
    POSITIVE_COMMENTS["2106-3"][:20]: ({S.PREGNANCY}, False),
    POSITIVE_COMMENTS["BRCA1"][:20]: ({S.GENETIC}, False),
}


def _expected_for_comment(text: str) -> tuple[set, bool]:
    matches = [v for fragment, v in SYNTHETIC_COMMENTS.items() if fragment in text]
    assert len(matches) == 1, "every synthetic comment template has one fragment above"
    return matches[0]


def _expected_for_result(system: str, code: str) -> set:
    if system == "LN":
        return {S(cat) for cat, codes in lexicon.LOINC.items() if code in codes}
    return {S.GENETIC} if code == "BRCA1" else set()


def test_classify_record_over_synthetic_records_matches_codes_and_comments() -> None:
    seen: set[SpecialCategory] = set()
    for record in SyntheticLab(seed=41).records(200):
        found = classify_record(record)
        by_result: dict = {}
        by_comment: dict = {}
        by_kind: dict = {}
        results = comments = 0
        for order in record.orders:
            notes = list(order.comments)
            for result in order.results:
                results += 1
                notes += result.comments
                for cat in _expected_for_result(result.code_system, result.code):
                    by_result.setdefault(cat, set()).add(result.id)
            for note in notes:
                comments += 1
                cats, has_phone = _expected_for_comment(note.text)
                for cat in cats:
                    by_comment.setdefault(cat, set()).add(note.id)
                if has_phone:
                    by_kind.setdefault("phone", set()).add(note.id)
        assert found.patient_id == record.id
        assert dict(found.result_ids) == by_result
        assert dict(found.comment_ids) == by_comment
        assert found.special == by_result.keys() | by_comment.keys()
        assert dict(found.counts) == {c: len(by_result.get(c, ())) + len(by_comment.get(c, ()))
                                      for c in found.special}
        assert dict(found.identifier_comment_ids) == by_kind
        assert found.identifiers == by_kind.keys()
        assert (found.results_scanned, found.comments_scanned) == (results, comments)
        _assert_no_personal_value(record, repr(found) + str(found))
        seen |= found.special
    assert seen == {S.HIV, S.HEPATITIS, S.PREGNANCY, S.CANCER, S.GENETIC, S.PSYCHIATRIC}


def _assert_no_personal_value(record, shown: str) -> None:
    p = record.patient
    values = [p.last_name, p.first_names, p.birth_name, p.nir, p.phone, p.email,
              p.birth_date.isoformat(), p.address.line1 if p.address else None]
    for order in record.orders:
        values += [c.text for c in order.comments]
        for r in order.results:
            values += [c.text for c in r.comments]
            values.append(r.value if not r.value.replace(".", "").isdigit() else None)
    for value in values:
        if value and len(value) >= 4:
            assert value not in shown


def test_record_findings_are_read_only() -> None:
    record = next(r for r in SyntheticLab(seed=2).records(50) if classify_record(r).special)
    found = classify_record(record)
    with pytest.raises(TypeError):
        found.counts[S.HIV] = 3  # type: ignore[index]
    with pytest.raises(AttributeError):
        found.special = frozenset()  # type: ignore[misc]
