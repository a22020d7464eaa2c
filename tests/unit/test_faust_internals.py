"""Every private Faust name the worker relies on still exists in the installed Faust."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from streams.worker import faust_internals
from streams.worker.faust_internals import PRIVATE_NAMES


def _source_of(dotted: str) -> str:
    module, name = dotted.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    return "".join(
        inspect.getsource(k) for k in cls.__mro__ if k.__module__.startswith(("faust", "mode"))
    )


@pytest.mark.parametrize("dotted", sorted(PRIVATE_NAMES))
def test_each_private_name_is_defined_by_the_installed_faust(dotted: str) -> None:
    source = _source_of(dotted)
    missing = [
        n
        for n in PRIVATE_NAMES[dotted]
        if not re.search(rf"(self\.{n}\b\s*(:|=)|def {n}\b|\b{n}\s*:)", source)
    ]
    assert not missing, f"{dotted} no longer defines {missing}: update faust_internals.py"


def test_no_other_module_uses_a_private_faust_name() -> None:
    """The private names are read in faust_internals.py only."""
    names = {n for group in PRIVATE_NAMES.values() for n in group if n.startswith("_")}
    root = Path(faust_internals.__file__).parents[1]
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "faust_internals.py":
            continue
        text = path.read_text()
        offenders += [f"{path.name}: {n}" for n in names if re.search(rf"\.{n}\b", text)]
    assert not offenders, offenders
