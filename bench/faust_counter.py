"""The bare-Faust baseline: one agent with default settings that only counts messages.

    python -m bench.faust_counter BROKER APP_ID TOPIC[,TOPIC] EXPECTED OUT.json

Writes the count and the wall times of its first and last message to OUT.json once it has
seen EXPECTED messages; the caller stops this process by its pid.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import faust


def main() -> None:
    broker, app_id, topics, expected, out = sys.argv[1:6]
    want = int(expected)
    app = faust.App(app_id, broker=broker, store="memory://", web_enabled=False)
    source = app.topic(*topics.split(","))
    seen = {"messages": 0, "first": 0.0, "last": 0.0}

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for _value in stream:
            if not seen["messages"]:
                seen["first"] = time.time()
            seen["messages"] += 1
            if seen["messages"] == want:
                seen["last"] = time.time()
                Path(out).write_text(json.dumps(seen))

    sys.argv = [sys.argv[0], "worker", "--loglevel=warn"]
    app.main()


if __name__ == "__main__":
    main()
