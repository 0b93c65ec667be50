"""Registering a patient, entering an order and validating it through the API, with real
enrolled accounts: who may do what, and errors that carry no submitted value."""

from __future__ import annotations

import uuid

from labvault.access.permissions import Permission
from labvault.access.principal import Role
from labvault.synthetic import SyntheticLab

FINESS = "750000010"


def identity() -> dict:
    p = SyntheticLab(seed=23).patient()
    body = {"last_name": p.last_name, "first_names": p.first_names,
            "birth_date": p.birth_date.isoformat(), "sex": p.sex.value, "nir": p.nir,
            "birth_place": p.birth_place, "phone": p.phone, "email": p.email}
    if p.address is not None:
        a = p.address
        body["address"] = {"line1": a.line1, "postal_code": a.postal_code, "city": a.city,
                           "country": a.country}
    return {k: v for k, v in body.items() if v is not None}


def order(*statuses: str) -> dict:
    return {"lab_finess": FINESS, "sampled_at": "2026-03-02T07:45:00+01:00",
            "prescriber": {"last_name": "Martin", "first_name": "Claire", "rpps": "10000000009"},
            "lab_file_number": "2026-000777",
            "results": [{"code_system": "LN", "code": "2345-7", "label": "Glucose",
                         "value": f"5.{i}", "unit": "mmol/L", "reference_range": "3.9-5.8",
                         "abnormal_flag": "N", **({"status": s} if s else {})}
                        for i, s in enumerate(statuses or ("", ""))],
            "comments": ["Patient a jeun"]}


def register(client, who) -> tuple[str, dict]:
    body = identity()
    r = client.post("/patients", json=body, headers=who.headers)
    assert r.status_code == 201, r.text
    return r.json()["patient_id"], body


def test_register_enter_and_validate(client, login):
    sec, tech, bio = login(Role.SECRETARY), login(Role.TECHNICIAN), login(Role.BIOLOGIST)
    pid, body = register(client, sec)
    r = client.post("/patients/search", json={"nir": body["nir"]}, headers=sec.headers)
    assert r.status_code == 200 and r.json()["patient_ids"] == [pid]
    r = client.get(f"/patients/{pid}", headers=sec.headers)
    assert r.status_code == 200 and r.json()["last_name"] == body["last_name"]
    assert r.json()["birth_date"] == body["birth_date"]

    r = client.post(f"/patients/{pid}/orders", json=order(), headers=tech.headers)
    assert r.status_code == 201, r.text
    order_id = r.json()["order_id"]
    [stored] = client.get(f"/patients/{pid}/record", headers=tech.headers).json()["orders"]
    assert stored["id"] == order_id and stored["lab_finess"] == FINESS
    assert [x["value"] for x in stored["results"]] == ["5.0", "5.1"]
    assert {x["status"] for x in stored["results"]} == {"P"}  # preliminary until validated
    assert [c["text"] for c in stored["comments"]] == ["Patient a jeun"]

    url = f"/patients/{pid}/orders/{order_id}/validate"
    assert client.post(url, headers=tech.headers).status_code == 403
    r = client.post(url, headers=bio.headers)
    assert r.status_code == 200 and r.json() == {"validated": 2}
    assert client.post(url, headers=bio.headers).json() == {"validated": 0}
    [stored] = client.get(f"/patients/{pid}/record", headers=bio.headers).json()["orders"]
    assert {x["status"] for x in stored["results"]} == {"F"}


def test_who_may_enter_results(client, login, service_token):
    sec, tech, bio = login(Role.SECRETARY), login(Role.TECHNICIAN), login(Role.BIOLOGIST)
    pid, _ = register(client, sec)
    r = client.post(f"/patients/{pid}/orders", json=order(), headers=sec.headers)
    assert r.status_code == 403 and r.json() == {"error": "forbidden"}
    # Results entered as final are a validation: not the technician's.
    r = client.post(f"/patients/{pid}/orders", json=order("P", "F"), headers=tech.headers)
    assert r.status_code == 403 and r.json() == {"error": "forbidden"}
    assert client.post(f"/patients/{pid}/orders", json=order("F"),
                       headers=bio.headers).status_code == 201
    gateway = {"Authorization": f"Bearer {service_token([Permission.RESULT_WRITE])}"}
    assert client.post(f"/patients/{pid}/orders", json=order(),
                       headers=gateway).status_code == 201
    reader = {"Authorization": f"Bearer {service_token([Permission.PATIENT_READ])}"}
    assert client.post(f"/patients/{pid}/orders", json=order(),
                       headers=reader).status_code == 403
    # Technicians and biologists do not register patients; secretaries do.
    assert client.post("/patients", json=identity(), headers=tech.headers).status_code == 403
    r = client.post(f"/patients/{uuid.uuid4()}/orders", json=order(), headers=tech.headers)
    assert r.status_code == 404 and r.json() == {"error": "not_found"}
    r = client.post(f"/patients/{pid}/orders/{uuid.uuid4()}/validate", headers=bio.headers)
    assert r.status_code == 404 and r.json() == {"error": "not_found"}


def test_invalid_input_names_the_field_and_echoes_no_value(client, login):
    sec, tech = login(Role.SECRETARY), login(Role.TECHNICIAN)
    body = identity() | {"birth_date": "1985-13-45"}
    r = client.post("/patients", json=body, headers=sec.headers)
    assert r.status_code == 422
    assert [f["field"] for f in r.json()["fields"]] == ["body.birth_date"]
    for value in ("1985-13-45", body["last_name"], body["nir"]):
        assert value not in r.text

    bad_nir = body["nir"][:-2] + ("00" if body["nir"][-2:] != "00" else "01")
    r = client.post("/patients", json=identity() | {"nir": bad_nir}, headers=sec.headers)
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "patient.nir"
    assert bad_nir not in r.text and body["last_name"] not in r.text

    pid, _ = register(client, sec)
    bad = order() | {"lab_finess": "750000011"}
    r = client.post(f"/patients/{pid}/orders", json=bad, headers=tech.headers)
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "order.lab_finess"
    assert "750000011" not in r.text
    bad = order()
    bad["results"][0]["value"] = ""
    bad["results"][1]["status"] = "Zeugma-status"
    r = client.post(f"/patients/{pid}/orders", json=bad, headers=tech.headers)
    assert r.status_code == 422
    assert {f["field"] for f in r.json()["fields"]} == {"body.results.0.value",
                                                         "body.results.1.status"}
    assert "Zeugma" not in r.text and "Glucose" not in r.text


def test_no_route_answers_without_a_session(client, login):
    pid, oid = uuid.uuid4(), uuid.uuid4()
    for url, body in (("/patients", identity()), (f"/patients/{pid}/orders", order()),
                      (f"/patients/{pid}/orders/{oid}/validate", None)):
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            r = client.post(url, json=body, headers=headers)
            assert r.status_code == 401 and r.json() == {"error": "authentication_failed"}
