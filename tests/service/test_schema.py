"""Property-based tests of the API from its own OpenAPI schema (schemathesis), against a real
server on 127.0.0.1: no input makes it answer 5xx, and every route answers 401 without the
token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from server_helpers import TOKEN, Server, running_server

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.timeout(600)

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("schema")) as s:
        yield s


def test_no_input_gets_a_server_error_and_every_route_needs_the_token(server: Server) -> None:
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=AUTH)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: Any) -> None:
            response = case.call(base_url=server.url, headers=AUTH, timeout=30)
            where = (case.method, case.formatted_path, response.text[:300])
            assert response.status_code < 500, where
            anonymous = case.call(base_url=server.url, headers={"Authorization": ""}, timeout=30)
            assert anonymous.status_code == (200 if case.path == "/healthz" else 401), where

        check()
