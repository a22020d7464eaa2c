"""Changelog keys must read back as the same table key (Faust's json key serializer)."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from streams.worker.state import json_key


@given(st.text())
@example('a"b\\c')
@example("\x00offsets:3")
def test_json_key_round_trips(key: str) -> None:
    assert json.loads(json_key(key)) == key
    assert json_key(key) == json.dumps(key, ensure_ascii=False).encode()
