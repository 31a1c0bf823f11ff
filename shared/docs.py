"""Generated reference sections of README.md: every topic and every setting.

``python -m shared.docs --write README.md`` rewrites the blocks between
``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED: name -->``;
``--check`` fails when they are out of date (a unit test runs the check).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from shared.contracts import MESSAGES_BY_TOPIC
from shared.contracts.topics import TOPICS
from shared.settings import ServiceSettings

SERVICES = ("enrollment", "scheduler", "trigger_evaluator", "messaging")
_ALIASED = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "database_url": "DATABASE_URL",
}


def _specs() -> dict[str, tuple[tuple[str, ...], tuple[str, ...], type[BaseSettings]]]:
    found = {}
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.app")
        spec = module.SPEC
        found[spec.name] = (
            tuple(spec.consumes),
            tuple(spec.publishes),
            spec.settings,
        )
    return found


def topics_table() -> str:
    specs = _specs()
    lines = [
        "| topic | partitions | written by | read by | message types |",
        "|---|---|---|---|---|",
    ]
    for topic in TOPICS:
        readers = sorted(
            name for name, (consumes, _p, _s) in specs.items() if topic.name in consumes
        )
        types = ", ".join(f"`{m.TYPE}`" for m in MESSAGES_BY_TOPIC[topic.name])
        lines.append(
            f"| `{topic.name}` | {topic.partitions} | {topic.producer} | "
            f"{', '.join(readers) or 'any subscriber'} | {types} |"
        )
    return "\n".join(lines)


def _env_name(name: str) -> str:
    if name in _ALIASED:
        return f"`{_ALIASED[name]}` (or `OFFRAMP_{name.upper()}`)"
    return f"`OFFRAMP_{name.upper()}`"


def _default(field: FieldInfo) -> str:
    value = field.default
    if isinstance(value, frozenset):
        return f"{len(value)} values"
    return f"`{value!r}`" if value not in (None, "") else ("none" if value is None else '`""`')


def settings_table() -> str:
    lines = ["| setting | services | default | meaning |", "|---|---|---|---|"]
    rows: dict[str, tuple[list[str], FieldInfo]] = {}
    for service, (_c, _p, settings_class) in _specs().items():
        for name, field in settings_class.model_fields.items():
            rows.setdefault(name, ([], field))[0].append(service)
    for name, (services, field) in rows.items():
        where = "all" if name in ServiceSettings.model_fields else ", ".join(services)
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| {_env_name(name)} | {where} | {_default(field)} | {description} |")
    return "\n".join(lines)


SECTIONS = {"topics": topics_table, "settings": settings_table}


def _constant(value: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: value


def render(text: str) -> str:
    for name, build in SECTIONS.items():
        begin, end = f"<!-- BEGIN GENERATED: {name} -->\n", f"<!-- END GENERATED: {name} -->"
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
        replacement = begin + build() + "\n" + end
        text = pattern.sub(_constant(replacement), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("readme", type=Path)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = parser.parse_args()
    current = args.readme.read_text()
    wanted = render(current)
    if args.write:
        args.readme.write_text(wanted)
        return 0
    if wanted != current:
        print(f"{args.readme}: generated sections are stale; run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
