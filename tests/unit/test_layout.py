"""The house rules of the layout, checked on the imports of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(package)
        for name in sorted(_imports(path))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        # pure: the engine and the wire formats touch no framework, broker, Redis or clock
        (
            "streams/engine",
            (
                "faust",
                "mode",
                "aiokafka",
                "redis",
                "asyncio",
                "time",
                "streams.worker",
                "streams.store",
            ),
        ),
        (
            "streams/contract",
            ("faust", "mode", "aiokafka", "redis", "asyncio", "streams.engine", "streams.worker"),
        ),
        ("detectors", ("streams", "faust", "mode", "aiokafka", "redis", "asyncio")),
        # the worker never imports the notifier or the dev stack; replay never the worker
        ("streams/worker", ("streams.notify", "streams.dev", "streams.cli", "streams.replay")),
        ("streams/replay", ("streams.worker", "faust", "mode")),
        ("streams/store", ("faust", "mode", "streams.worker", "streams.notify", "streams.dev")),
        ("streams/notify", ("faust", "mode", "streams.worker", "streams.dev")),
    ],
)
def test_a_package_imports_nothing_it_must_not(package: str, forbidden: tuple[str, ...]) -> None:
    assert _offenders(package, forbidden) == []


def test_only_the_worker_imports_faust() -> None:
    outside = [
        p
        for p in _modules("streams")
        if "worker" not in p.parts and {"faust", "mode"} & {n.split(".")[0] for n in _imports(p)}
    ]
    assert outside == []
