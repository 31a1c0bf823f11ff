"""README.md's topic and setting tables are generated from code and must be current."""

from pathlib import Path

import pytest

from shared.docs import render

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_tables_are_up_to_date() -> None:
    current = README.read_text()
    assert render(current) == current, "run `make docs` and commit README.md"


def test_every_topic_and_setting_is_documented() -> None:
    text = README.read_text()
    for name in ("offramp.commands.v1", "offramp.deadletter.v1", "OFFRAMP_TOPIC_NAMESPACE"):
        assert name in text
