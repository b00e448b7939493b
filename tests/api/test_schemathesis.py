"""Property-based: inputs generated from the app's own OpenAPI document (valid ones
and invalid ones) never get a 500, and every answer uses a status code, content
type and body the document declares. Bounded so it stays quick."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import SEED_BODY
from ua_vp.api import create_app
from ua_vp.store import MissionStore

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 30
# No deadline (a first request pays for imports); no example database left in the checkout.
BOUNDED: dict[str, Any] = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}


@pytest.fixture
def api_schema(settings_for: Any, store: MissionStore) -> Any:
    return schemathesis.openapi.from_asgi("/schema/openapi.json", create_app(settings_for(), store=store))


# schemathesis.pytest.from_fixture does not work under pytest 9 (it reads a removed
# node attribute), so each operation's strategy is driven by hypothesis directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_server_error_and_schema_honoured(api_schema: Any, mode: GenerationMode) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 14
    tested = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, **BOUNDED)
        def check(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            # Nothing to get wrong: no parameters or body (healthz), or only free-form strings.
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        tested.append(operation.label)
    assert len(tested) >= (14 if mode is GenerationMode.POSITIVE else 5), tested


def test_generated_dispatches_to_real_profiles(api_schema: Any, store: MissionStore) -> None:
    """Random vp_ids are all refused (422); here the vp_id is a real one, so the
    generated objectives, constraints, budgets and keys reach the database."""
    operation = api_schema["/api/v1/ops/vp/missions/dispatch"]["POST"]
    statuses: Counter[int] = Counter()

    @given(case=operation.as_strategy(), vp_id=st.sampled_from(["vp.general.primary", "vp.coder.primary"]))
    @settings(max_examples=60, **BOUNDED)
    def check(case: Any, vp_id: str) -> None:
        case.body = {**case.body, "vp_id": vp_id}
        statuses[case.call_and_validate(checks=CHECKS).status_code] += 1

    check()
    assert statuses[201] > 0, statuses
    assert len(store.list_missions(limit=500)) == statuses[201]


def test_the_seed_body_conforms_to_the_schema(api_schema: Any) -> None:
    case = api_schema["/api/v1/ops/vp/missions/dispatch"]["POST"].Case(body=SEED_BODY)
    response = case.call_and_validate(checks=CHECKS)
    assert response.status_code == 201
