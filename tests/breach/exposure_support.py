"""Helpers of the exposure-check tests: configuration, request bodies, what an answer may vary
in, the rows a check leaves, and the statistics of the timing test."""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter
from datetime import date, timedelta

from sqlalchemy import event, select
from stdnum.fr import nir as stdnum_nir

from labvault.breach.config import BreachConfig
from labvault.store.tables import audit_event, breach_notice

# Headers that differ between any two responses, whatever was asked.
VARYING = frozenset({"x-request-id", "date"})


def config(per_source: int = 5, per_identity: int = 3) -> BreachConfig:
    return BreachConfig.from_mapping({
        "controller": {"name": "Laboratoire d'essai", "dpo_email": "dpo@lab.example"},
        "notices": {"public_url": "https://lab.example/verifier"},
        "exposure": {"per_source_per_hour": per_source, "per_identity_per_day": per_identity}})


def member(records):
    """A stored patient with a NIR (the synthetic set gives most of them one)."""
    return next(r.patient for r in records if r.patient.nir)


def stranger_nir(records, seed: int = 5) -> str:
    """A valid NIR (right key, same length) that no stored patient has."""
    taken = {r.patient.nir for r in records}
    rng = random.Random(seed)
    while True:
        body = f"{rng.choice('12')}{rng.randrange(40, 99)}{rng.randrange(1, 13):02d}75" \
               f"{rng.randrange(1, 999):03d}{rng.randrange(1, 999):03d}"
        nir = body + stdnum_nir.calc_check_digits(body)
        if nir not in taken:
            return nir


def other_date(born: date) -> date:
    return born - timedelta(days=397)


def body(nir: str, born: date) -> dict[str, str]:
    return {"nir": nir, "birth_date": born.isoformat()}


def stable_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() not in VARYING}


def audit_rows(vault, prefix: str = "breach:exposure:") -> list:
    e = audit_event.c
    q = select(audit_event).where(e.action.startswith(prefix)).order_by(e.id)
    with vault._records.engine.connect() as conn:
        return list(conn.execute(q))


def all_audit_text(vault) -> str:
    with vault._records.engine.connect() as conn:
        return json.dumps([[str(v) for v in r] for r in conn.execute(select(audit_event))])


def answers(vault) -> list:
    """The exposure answers queued (rows of ``breach_notice``)."""
    n = breach_notice.c
    with vault._records.engine.connect() as conn:
        return list(conn.execute(select(breach_notice).where(n.kind == "exposure-answer")))


def spellings(patient) -> list[str]:
    """Every form in which the patient's submitted values could leak."""
    d = patient.birth_date
    nir = patient.nir
    return [nir, f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}",
            d.isoformat(), d.strftime("%d/%m/%Y"), d.strftime("%Y%m%d"), d.strftime("%d%m%Y"),
            patient.last_name, patient.first_names]


# -- work ----------------------------------------------------------------------------------------
def count_work(vault, monkeypatch) -> Counter:
    """A counter of what the vault does from now on, by kind: ``writes`` (transactions
    committed on the data database, audit events appended), ``key reads`` (statements on the
    key store) and ``unwraps`` (data keys unwrapped). Cleared by the caller between steps."""
    work: Counter = Counter()
    event.listen(vault._records.engine, "commit", lambda *_: work.update(["writes"]))
    event.listen(vault._keystore.engine, "before_cursor_execute",
                 lambda *_: work.update(["key reads"]))

    def counted(name: str, call):
        def run(*args, **kwargs):
            work.update([name])
            return call(*args, **kwargs)
        return run

    monkeypatch.setattr(vault._keys, "unwrap", counted("unwraps", vault._keys.unwrap))
    monkeypatch.setattr(vault._audit, "append", counted("writes", vault._audit.append))
    return work


# -- timing --------------------------------------------------------------------------------------
def median_se(a: list[float], b: list[float], rounds: int = 400, seed: int = 1) -> float:
    """Bootstrap standard error of median(a) - median(b)."""
    rng = random.Random(seed)
    diffs = [statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b)))
             for _ in range(rounds)]
    return statistics.stdev(diffs)


def sign_z(paired: list[tuple[float, float]]) -> float:
    """Sign test over pairs taken side by side: how far (in standard deviations) the count of
    pairs where the first was slower is from half. Load bursts hit both sides of a pair."""
    n = len(paired)
    slower = sum(x > y for x, y in paired)
    return (slower - n / 2) / (n / 4) ** 0.5


def half_spread(values: list[float]) -> float:
    """|median of the even-numbered - median of the odd-numbered| samples of one kind."""
    return abs(statistics.median(values[::2]) - statistics.median(values[1::2]))
