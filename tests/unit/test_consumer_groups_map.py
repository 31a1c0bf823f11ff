"""The tests' map of who consumes what (tests/support/groups.py) follows the services."""

from __future__ import annotations

from importlib import import_module

import pytest

from tests.support.groups import CONSUMES

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("service", sorted(CONSUMES))
def test_the_test_suite_s_map_of_consumers_is_each_service_s_spec(service: str) -> None:
    spec = import_module(f"services.{service}.app").SPEC
    assert set(CONSUMES[service]) == set(spec.consumes)
