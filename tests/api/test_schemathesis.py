"""Schemathesis against the app's own OpenAPI document (enabled for the test): generated
requests — valid and invalid — as anonymous callers and as signed-in users of several roles
never produce a server error, and documented answers match their schema and content type."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from breach.sms_gateway import breach_config
from labvault.access.principal import Role
from labvault.breach.exposure import exposure_desk

EXAMPLES = 12  # per operation; the routes grow, the budget of CI does not
CHECKS = [schemathesis.checks.not_a_server_error, content_type_conformance,
          response_schema_conformance]


def run_schema(app, headers: dict[str, str], examples: int,
               skip: frozenset[tuple[str, str]] = frozenset()) -> Counter:
    """Every operation of the document, `examples` generated cases each; the status counts."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: Counter = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in skip:
            continue

        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case) -> None:
            response = case.call(headers=headers)
            statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS, headers=headers)

        check()
    return statuses


@pytest.fixture(autouse=True)
def breach_settings(vault, client) -> None:
    """A laboratory that has set breach.toml up, as `serve` loads it: the public exposure
    check is open (without it, it answers 503 to everyone by design)."""
    client.app.state.breach_config = config = breach_config()
    exposure_desk(vault, config)


def test_anonymous_callers_get_no_server_error(client, records):
    statuses = run_schema(client.app, {}, EXAMPLES)
    assert 500 not in statuses
    assert statuses[401] > EXAMPLES * 10  # the protected operations were reached and refused


@pytest.mark.parametrize("role", [Role.BIOLOGIST, Role.ADMIN, Role.DPO])
def test_signed_in_callers_get_no_server_error(role, client, records, login):
    # Logging out would end the session the rest of the run relies on: it is walked
    # anonymously above and tested in test_api_flows.
    statuses = run_schema(client.app, login(role).headers, EXAMPLES,
                          skip=frozenset({("POST", "/auth/logout")}))
    assert 500 not in statuses
    assert statuses[200] > 0  # the session held: some operations were served
    assert statuses[401] < sum(statuses.values()) / 2
