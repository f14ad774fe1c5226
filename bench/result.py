"""The one line every benchmark ends with: a JSON object that bench/summary.py collects.

    {"bench": "idle_latency", "figure": "p50 3.1 ms (...)", "bar": "p50 <= 30 ms", "pass": true, ...}

`figure` is the headline, `bar` the target it is held to, `pass` whether it holds
(`null` when the benchmark has no bar); any other keys are the raw figures.
"""

from __future__ import annotations

import json
from typing import Any


def emit(bench: str, *, figure: str, bar: str, passed: bool | None, **figures: Any) -> None:
    print(json.dumps({"bench": bench, "figure": figure, "bar": bar, "pass": passed, **figures}), flush=True)
