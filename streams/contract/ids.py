"""The id grammar: what a prediction_id or model_id may be, everywhere.

An id becomes a table key, a Redis hash field, an alert label and a line in a terminal,
so one rule serves the event parser, the owner registry and the CLI: a model the worker
accepts can always be owned, and an owner can only be registered for a model that can
exist. An id is 1 to :data:`MAX_ID_LENGTH` characters with:

- no control characters (Cc): internal state keys start with ``"\\x00"``, so no id can
  ever collide with them, and ids cannot break log lines or terminals;
- no whitespace of any kind, ASCII or Unicode (Zs, Zl, Zp and the whitespace controls):
  ``"fraud"`` and ``"fraud "`` would otherwise be two models that look like one;
- no format characters (Cf: zero-width spaces and joiners, bidi overrides), which make
  different ids look identical or reorder what is displayed;
- no surrogates, private-use or unassigned code points (Cs, Co, Cn), whose meaning is
  not fixed.

That is exactly ``value.isprintable() and " " not in value``: Python's "printable" is
every character outside the Other (C*) and Separator (Z*) categories, plus the ASCII
space. The categories come from the Unicode database of the running Python (3.11:
Unicode 14.0); ``tests/unit/test_ids.py`` checks the equivalence on every code point.
"""

from __future__ import annotations

import unicodedata
from typing import Final

__all__ = ["MAX_ID_LENGTH", "id_problem", "is_valid_id"]

MAX_ID_LENGTH: Final = 256
"""Longest prediction_id / model_id accepted: they become table keys and alert labels."""

_KINDS: Final = {
    "Cc": "a control character",
    "Cf": "a format (invisible) character",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zs": "whitespace",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def is_valid_id(value: str) -> bool:
    """True when ``value`` follows the id grammar; the fast check, two C loops at most."""
    return 0 < len(value) <= MAX_ID_LENGTH and " " not in value and value.isprintable()


def id_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an id, as a clause ("must be ..."), or None if valid.

    Names the first offending character by code point, name and position, since the
    character itself is often invisible.
    """
    if not 0 < len(value) <= MAX_ID_LENGTH:
        return f"must be 1 to {MAX_ID_LENGTH} characters long, got {len(value)}"
    for position, char in enumerate(value):
        if char == " " or not char.isprintable():
            kind = _KINDS[unicodedata.category(char)]
            if char.isspace() and kind == _KINDS["Cc"]:
                kind = "whitespace (a control character)"
            name = unicodedata.name(char, "")
            shown = f"U+{ord(char):04X}" + (f" {name}" if name else "")
            return f"must not contain {kind}, got {shown} at position {position}"
    return None
