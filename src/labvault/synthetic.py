"""Deterministic generator of realistic synthetic French laboratory data.

Used by the demo, the tests and the benchmarks. Never real patients: names, addresses and
contact details come from Faker's ``fr_FR`` locale, identifiers are random with valid keys,
and every INS carries the *test* OID because a random valid NIR may belong to a real person.

Everything is drawn from one ``random.Random(seed)`` and one Faker instance seeded with the
same seed, uuids included, so a given seed always yields identical records. Results use no
Faker at all, which keeps generation fast (10,000 patients, 100,000 results in a few seconds).
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from typing import NamedTuple

from faker import Faker
from stdnum import luhn
from stdnum.fr import nir as stdnum_nir

from labvault.domain.records import (
    AbnormalFlag,
    Address,
    Comment,
    ComplementaryInsurance,
    IdentityStatus,
    Ins,
    InsOid,
    MandatoryInsurance,
    Order,
    Patient,
    PatientRecord,
    Prescriber,
    Result,
    ResultStatus,
    Sex,
)

NEGATIVE, POSITIVE = "Négatif", "Positif"


class _Test(NamedTuple):
    code: str
    label: str
    unit: str | None = None
    decimals: int = 1
    low: float = 0.0  # female / default reference range
    high: float = 0.0
    male: tuple[float, float] | None = None  # male reference range when different
    crit: tuple[float | None, float | None] = (None, None)  # LL / HH thresholds
    up: float = 0.6  # share of abnormal values above the range
    values: tuple[str, str] = ("", "")  # qualitative: (normal, abnormal)
    p_pos: float = 0.0
    system: str = "LN"


# fmt: off
HB = _Test("718-7", "Hémoglobine", "g/dL", 1, 12.0, 16.0, (13.0, 17.0), (7.0, None), 0.2)
WBC = _Test("6690-2", "Leucocytes", "G/L", 2, 4.0, 10.0, None, (1.0, 50.0), 0.6)
PLT = _Test("777-3", "Plaquettes", "G/L", 0, 150, 400, None, (20, 1000), 0.5)
RBC = _Test("789-8", "Hématies", "T/L", 2, 3.8, 5.2, (4.3, 5.7), (None, None), 0.3)
HCT = _Test("4544-3", "Hématocrite", "%", 1, 37.0, 47.0, (40.0, 52.0), (None, None), 0.3)
NA = _Test("2951-2", "Sodium", "mmol/L", 0, 136, 145, None, (120, 160), 0.4)
K = _Test("2823-3", "Potassium", "mmol/L", 1, 3.5, 5.1, None, (2.8, 6.2), 0.5)
CREA = _Test("2160-0", "Créatinine", "mg/L", 1, 5.0, 10.0, (7.0, 12.0), (None, None), 0.9)
GLU = _Test("2345-7", "Glycémie à jeun", "g/L", 2, 0.70, 1.10, None, (0.50, 4.00), 0.85)
HBA1C = _Test("4548-4", "Hémoglobine glyquée (HbA1c)", "%", 1, 4.0, 6.0, None, (None, 14.0), 0.95)
ALT = _Test("1742-6", "ALAT (TGP)", "UI/L", 0, 5, 40, None, (None, 1000), 1.0)
AST = _Test("1920-8", "ASAT (TGO)", "UI/L", 0, 5, 40, None, (None, 1000), 1.0)
GGT = _Test("2324-2", "Gamma-GT", "UI/L", 0, 8, 55, None, (None, None), 1.0)
CHOL = _Test("2093-3", "Cholestérol total", "g/L", 2, 1.40, 2.00, None, (None, None), 0.9)
TG = _Test("2571-8", "Triglycérides", "g/L", 2, 0.35, 1.50, None, (None, 10.0), 0.95)
HDL = _Test("2085-9", "Cholestérol HDL", "g/L", 2, 0.40, 0.90, None, (None, None), 0.2)
TSH = _Test("3016-3", "TSH", "mUI/L", 2, 0.27, 4.20, None, (None, None), 0.6)
CRP = _Test("1988-5", "Protéine C réactive (CRP)", "mg/L", 1, 0.0, 5.0, None, (None, None), 1.0)
FER = _Test("2276-4", "Ferritine", "µg/L", 0, 15, 150, (30, 400), (None, None), 0.5)
PSA = _Test("2857-1", "PSA total", "µg/L", 2, 0.0, 4.0, None, (None, None), 1.0)
CA125 = _Test("10334-1", "CA 125", "U/mL", 1, 0.0, 35.0, None, (None, None), 1.0)
HIV = _Test("56888-1", "Sérologie VIH 1/2 (Ac anti-VIH 1/2 et Ag p24)",
            values=(NEGATIVE, POSITIVE), p_pos=0.03)
HCV = _Test("16128-1", "Sérologie hépatite C (Ac anti-VHC)", values=(NEGATIVE, POSITIVE),
            p_pos=0.04)
HCG = _Test("2106-3", "Test de grossesse urinaire (hCG)", values=(NEGATIVE, POSITIVE), p_pos=0.3)
BRCA1 = _Test("BRCA1", "Recherche de mutations du gène BRCA1 (séquençage)", system="LOCAL",
              values=("Absence de variant pathogène détecté",
                      "Variant pathogène détecté : c.68_69del (p.Glu23Valfs*17)"), p_pos=0.1)

# (weight, sex restriction, min age, max age, tests)
PANELS: tuple[tuple[int, Sex | None, int, int, tuple[_Test, ...]], ...] = (
    (30, None, 0, 200, (HB, WBC, PLT, RBC, HCT)), (20, None, 0, 200, (NA, K, CREA)),
    (15, None, 10, 200, (GLU, HBA1C)), (10, None, 15, 200, (ALT, AST, GGT)),
    (12, None, 18, 200, (CHOL, TG, HDL)), (10, None, 0, 200, (TSH,)), (12, None, 0, 200, (CRP,)),
    (8, None, 0, 200, (FER,)), (6, Sex.MALE, 45, 200, (PSA,)), (3, Sex.FEMALE, 30, 200, (CA125,)),
    (6, None, 15, 200, (HIV,)), (4, None, 15, 200, (HCV,)), (8, Sex.FEMALE, 15, 50, (HCG,)),
    (2, Sex.FEMALE, 25, 200, (BRCA1,)),
)
POSITIVE_COMMENTS = {
    HIV.code: "Sérologie VIH positive confirmée par Western blot, médecin prévenu par téléphone",
    HCV.code: "Ac anti-VHC positifs : hépatite C à confirmer par recherche d'ARN VHC",
    HCG.code: "Grossesse débutante probable, dosage des β-hCG plasmatiques conseillé",
    BRCA1.code: "Variant pathogène BRCA1 : consultation d'oncogénétique pour les apparentées",
}
# (template, sex restriction); fields: sa last relf relm phone dr d c
ORDER_COMMENTS: tuple[tuple[str, Sex | None], ...] = (
    ("Patiente enceinte de {sa} SA, contrôle dans 1 mois", Sex.FEMALE),
    ("Bilan pré-IVG demandé par le Dr {dr}, résultats urgents", Sex.FEMALE),
    ("Suivi chimiothérapie pour cancer du sein, J{d} de la cure n°{c}", Sex.FEMALE),
    ("Patient sous traitement antirétroviral (VIH), bilan trimestriel", None),
    ("Hépatite C sous sofosbuvir/velpatasvir, contrôle à S{c}", None),
    ("Traitement par lithium pour trouble bipolaire, prélèvement à H12", None),
    ("Dépression sévère sous sertraline, surveillance du bilan hépatique", None),
    ("Patient hospitalisé en psychiatrie, résultats à faxer au CMP", None),
    ("Résultats à transmettre à sa fille {relf} {last} au {phone}", None),
    ("Prévenir le conjoint, {relm} {last}, au {phone} si résultat anormal", None),
    ("Patient sous tutelle, contacter son frère {relm} {last} ({phone})", None),
    ("Prélèvement à domicile par l'IDE, joignable au {phone}", None),
    ("À jeun depuis 12 h", None), ("Prélèvement difficile, sous anticoagulant", None),
    ("Suivi cancer de la prostate après prostatectomie", Sex.MALE),
    ("Renouvellement, ordonnance du Dr {dr} du {d}/0{c}", None),
)
RESULT_COMMENTS = (
    "Résultat contrôlé sur un second prélèvement", "Hémolyse légère, interpréter avec prudence",
    "Valeur téléphonée au médecin prescripteur", "Résultat à recontrôler dans 1 mois",
    "Patient traité pour un cancer, comparer aux résultats antérieurs",
    "Contexte de grossesse, valeur à interpréter selon le terme",  # last two: women only
    "Patiente sous traitement hormonal après IVG, contrôle prévu",
)
MUTUELLES = ("Mutuelle des Trois Vallées", "Harmonie Solidaire du Littoral",
             "Mutuelle Ligérienne de Santé", "Prévoyance Atlantique Mutualiste",
             "Alliance Mutualiste d'Armor", "Mutuelle Générale des Volcans", "Santé Plus Provence")
COUNTRIES = ("109", "127", "131", "132", "134", "139", "208", "216", "243", "322", "326", "335",
             "341", "350", "351", "352", "114", "122")
# fmt: on
DEPARTMENTS = (*(f"{i:02d}" for i in range(1, 96) if i != 20), "2A", "2B")
OVERSEAS = ("971", "972", "973", "974", "975", "976")
AGE_WEIGHTS = tuple(0.6 if a < 18 else 1.5 if a < 80 else max(0.05, 1.5 - (a - 79) * 0.08)
                    for a in range(101))
_S = IdentityStatus
STATUSES = (*[_S.QUALIFIED] * 11, *[_S.VALIDATED] * 5, *[_S.PROVISIONAL] * 3, _S.RECOVERED)


def flag_for(value: float, low: float, high: float, crit: tuple[float | None, float | None]
             ) -> AbnormalFlag:
    """HL7 abnormal flag of a numeric value against its range and critical thresholds."""
    if crit[0] is not None and value < crit[0]:
        return AbnormalFlag.CRITICALLY_LOW
    if value < low:
        return AbnormalFlag.LOW
    if crit[1] is not None and value > crit[1]:
        return AbnormalFlag.CRITICALLY_HIGH
    return AbnormalFlag.HIGH if value > high else AbnormalFlag.NORMAL


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in text.lower() if c.isalnum() or c == "-")


class SyntheticLab:
    """A seeded source of synthetic patients, prescribers, orders and results."""

    def __init__(self, seed: int = 0, *, results_per_patient: float = 10.0,
                 reference_date: date = date(2026, 1, 1), labs: int = 3) -> None:
        if results_per_patient < 0 or labs < 1:
            raise ValueError("results_per_patient must be >= 0 and labs >= 1")
        self.results_per_patient = results_per_patient
        self.reference_date = reference_date
        self._rng = random.Random(seed)  # noqa: S311 - synthetic data, not cryptography
        self._faker = Faker("fr_FR")
        self._faker.seed_instance(seed)
        self._now = datetime(reference_date.year, reference_date.month, reference_date.day,
                             tzinfo=UTC)
        self._age_cum = tuple(accumulate(AGE_WEIGHTS))
        depts = self._rng.sample([d for d in DEPARTMENTS if d.isdigit()], labs)
        self.lab_finess: tuple[str, ...] = tuple(
            (b := f"{d}{self._rng.randrange(10**6):06d}") + luhn.calc_check_digit(b)
            for d in depts)
        self._women = [self._faker.first_name_female() for _ in range(60)]
        self._men = [self._faker.first_name_male() for _ in range(60)]
        self._pool = [self._prescriber() for _ in range(50)]

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self._rng.getrandbits(128), version=4)

    def _digits(self, n: int) -> str:
        return f"{self._rng.randrange(10**n):0{n}d}"

    def _phone(self) -> str:
        rng = self._rng
        first = rng.choice("67") if rng.random() < 0.75 else rng.choice("12345")
        pairs = " ".join(self._digits(2) for _ in range(4))
        return f"+33 {first} {pairs}" if rng.random() < 0.25 else f"0{first} {pairs}"

    def _prescriber(self) -> Prescriber:
        base = "10" + self._digits(8)
        adeli = None
        if self._rng.random() < 0.3:
            a = self._rng.choice(DEPARTMENTS[:90]) + "1" + self._digits(5)
            adeli = a + luhn.calc_check_digit(a)
        return Prescriber(last_name=self._faker.last_name(), first_name=self._faker.first_name(),
                          rpps=base + luhn.calc_check_digit(base), adeli=adeli)

    def prescribers(self) -> list[Prescriber]:
        """The pool of prescribers orders are drawn from."""
        return list(self._pool)

    def _birth_place(self) -> str:
        r, rng = self._rng.random(), self._rng
        if r < 0.88:
            return rng.choice(DEPARTMENTS) + f"{rng.randint(1, 350):03d}"
        if r < 0.92:
            return rng.choice(OVERSEAS) + f"{rng.randint(1, 24):02d}"
        return "99" + rng.choice(COUNTRIES)

    def patient(self) -> Patient:
        """One synthetic patient, with a NIR and a test-OID INS for most."""
        rng, fk = self._rng, self._faker
        sex = Sex.FEMALE if rng.random() < 0.52 else Sex.MALE
        age = rng.choices(range(101), cum_weights=self._age_cum)[0]
        days = age * 365 + rng.randrange(30 if age == 0 else 0, 365)  # newborns: 30 days+
        birth = self.reference_date - timedelta(days=days)
        first = fk.first_name_female if sex is Sex.FEMALE else fk.first_name_male
        first_names = first() if rng.random() < 0.7 else f"{first()} {first()}"
        last = fk.last_name()
        birth_name = last
        if sex is Sex.FEMALE and age >= 18 and rng.random() < 0.3:
            while birth_name == last:
                birth_name = fk.last_name()
        place = self._birth_place()
        p_no_nir = 0.3 if place.startswith("99") else 0.5 if age == 0 else 0.01
        nir = ins = None
        if rng.random() >= p_no_nir:
            body = f"{1 if sex is Sex.MALE else 2}{birth.year % 100:02d}{birth.month:02d}"
            body += place + f"{rng.randint(1, 999):03d}"
            nir = body + stdnum_nir.calc_check_digits(body)  # handles 2A/2B
            ins = Ins(matricule=nir, oid=InsOid.TEST_NIR, status=rng.choice(STATUSES))
        address = (Address(line1=fk.street_address(), postal_code=fk.postcode(), city=fk.city())
                   if rng.random() < 0.95 else None)
        phone = self._phone() if rng.random() < 0.85 else None
        email = None
        if rng.random() < 0.6:
            suffix = str(rng.randint(1, 99)) if rng.random() < 0.4 else ""
            email = (f"{_ascii(first_names.split()[0])}.{_ascii(last)}{suffix}"
                     f"@{fk.free_email_domain()}")
        scheme = "01" if rng.random() < 0.88 else rng.choice(("02", "03"))
        mandatory = MandatoryInsurance(
            scheme=scheme, fund=f"{rng.randint(1, 95):02d}{rng.randint(1, 2)}",
            centre=self._digits(4), beneficiary_rank=1 if age >= 18 else rng.randint(1, 3))
        complementary = (ComplementaryInsurance(rng.choice(MUTUELLES), self._digits(8),
                                                f"M{self._digits(9)}")
                         if rng.random() < 0.8 else None)
        return Patient(last_name=last, first_names=first_names, birth_date=birth, sex=sex,
                       birth_name=birth_name, nir=nir, ins=ins, birth_place=place,
                       address=address, phone=phone, email=email,
                       mandatory_insurance=mandatory, complementary_insurance=complementary,
                       id=self._uuid())

    def _poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        if mean > 30:
            return max(0, round(self._rng.gauss(mean, mean**0.5)))
        limit, k, p = 2.718281828459045**-mean, 0, self._rng.random()
        while p > limit:
            k += 1
            p *= self._rng.random()
        return k

    def _comment(self, template: str, patient: Patient) -> Comment:
        rng = self._rng
        text = template.format(
            sa=rng.randint(6, 38), last=patient.last_name, relf=rng.choice(self._women),
            relm=rng.choice(self._men), phone=self._phone(), dr=rng.choice(self._pool).last_name,
            d=rng.randint(1, 28), c=rng.randint(1, 9))
        return Comment(text=text, id=self._uuid())

    def _result(self, t: _Test, sex: Sex, observed: datetime) -> Result:
        rng = self._rng
        comments: tuple[Comment, ...] = ()
        if t.values[0]:
            positive = rng.random() < t.p_pos
            value = t.values[positive]
            flag = AbnormalFlag.ABNORMAL if positive else AbnormalFlag.NORMAL
            ref = None if t.system == "LOCAL" else t.values[0]
            unit = None
            if positive:
                comments = (Comment(text=POSITIVE_COMMENTS[t.code], id=self._uuid()),)
        else:
            low, high = t.male if sex is Sex.MALE and t.male else (t.low, t.high)
            span = high - low
            if rng.random() < 0.85:  # mostly normal, then a tail above or below the range
                v = rng.gauss((low + high) / 2, span / 4.5)
            elif rng.random() < t.up:  # markers that skew high sometimes soar
                heavy = 8 if t.up >= 0.85 and rng.random() < 0.2 else 1
                v = high + span * rng.expovariate(2.5) * heavy
            else:
                v = low - span * rng.expovariate(4)
            value = f"{max(v, low * 0.3):.{t.decimals}f}"
            flag = flag_for(float(value), low, high, t.crit)
            ref, unit = f"{low:.{t.decimals}f}-{high:.{t.decimals}f}", t.unit
        if rng.random() < 0.08:
            pool = RESULT_COMMENTS if sex is Sex.FEMALE else RESULT_COMMENTS[:-2]
            comments += (Comment(text=rng.choice(pool), id=self._uuid()),)
        r = rng.random()
        status = (ResultStatus.FINAL if r < 0.93 else ResultStatus.PRELIMINARY if r < 0.97
                  else ResultStatus.CORRECTED)
        return Result(code_system=t.system, code=t.code, label=t.label, value=value, unit=unit,
                      reference_range=ref, abnormal_flag=flag, status=status,
                      observed_at=observed, comments=comments, id=self._uuid())

    def record(self) -> PatientRecord:
        """A patient and 1..4 orders whose results total ``results_per_patient`` on average."""
        rng, patient = self._rng, self.patient()
        mean = self.results_per_patient
        total = 1 + self._poisson(mean - 1) if mean >= 1 else self._poisson(mean)
        if total == 0:
            return PatientRecord(patient=patient)
        age = (self.reference_date - patient.birth_date).days // 365
        panels = [p for p in PANELS if p[1] in (None, patient.sex) and p[2] <= age <= p[3]]
        weights = tuple(accumulate(p[0] for p in panels))
        n_codes = len({t.code for p in panels for t in p[4]})
        n_orders = min(total, rng.choices((1, 2, 3, 4), (40, 30, 20, 10))[0])
        cuts = sorted(rng.sample(range(1, total), n_orders - 1))
        quotas = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
        birth = datetime(patient.birth_date.year, patient.birth_date.month,
                         patient.birth_date.day, tzinfo=UTC) + timedelta(days=1)
        lower = max(self._now - timedelta(days=730), birth)
        window = int((self._now - timedelta(days=22) - lower).total_seconds() // 60)
        home = rng.choice(self.lab_finess)
        orders = []
        for quota in quotas:
            requested = lower + timedelta(minutes=rng.randrange(max(window, 1)))
            delay = rng.randint(5, 480) if rng.random() < 0.7 else rng.randint(1440, 28800)
            sampled = requested + timedelta(minutes=delay)
            results: list[Result] = []
            seen: set[str] = set()
            while len(results) < quota:
                if len(seen) >= n_codes:
                    seen.clear()
                for t in rng.choices(panels, cum_weights=weights)[0][4]:
                    if t.code not in seen and len(results) < quota:
                        seen.add(t.code)
                        observed = sampled + timedelta(minutes=rng.randint(30, 1400))
                        results.append(self._result(t, patient.sex, observed))
            comments = ()
            if rng.random() < 0.3:
                choices = [c for c, s in ORDER_COMMENTS if s in (None, patient.sex)]
                comments = (self._comment(rng.choice(choices), patient),)
            orders.append(Order(
                lab_finess=home if rng.random() < 0.8 else rng.choice(self.lab_finess),
                sampled_at=sampled, requested_at=requested,
                prescriber=rng.choice(self._pool) if rng.random() < 0.9 else None,
                lab_file_number=f"{sampled.year}-{self._digits(6)}", results=tuple(results),
                comments=comments, id=self._uuid()))
        orders.sort(key=lambda o: o.sampled_at or self._now)
        return PatientRecord(patient=patient, orders=tuple(orders))

    def records(self, n: int) -> Iterator[PatientRecord]:
        """Stream ``n`` records; the same seed always yields the same records and ids."""
        for _ in range(n):
            yield self.record()
