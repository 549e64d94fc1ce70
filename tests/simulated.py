"""What the simulator tests share: serving a shipped scenario around a test body, and reading
back the ground truth file the run wrote."""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bosai.paths import PROFILES_DIR
from simulators.runner import Endpoints, SimulatorSet, default_scenario_path, load_scenario
from wire.clock import ScaledClock

Body = Callable[[SimulatorSet, Endpoints, ScaledClock], Awaitable[None]]


def serve(name: str, body: Body, tmp_path: Path, at: float, speed: float, timeout: float) -> SimulatorSet:
    """Serve the shipped scenario `name` from scenario time `at` on a scaled clock, run `body`
    against its endpoints (within `timeout` wall seconds), and return the closed set: its truth
    file is written."""
    scenario = load_scenario(default_scenario_path(name))
    clock = ScaledClock(start=time.time(), speed=speed)
    sims = SimulatorSet(scenario, clock, tmp_path / "sim", PROFILES_DIR, start_at=at)

    async def main() -> None:
        async with sims as endpoints:
            await asyncio.wait_for(body(sims, endpoints, clock), timeout=timeout)

    asyncio.run(main())
    return sims


class TruthFile:
    """A written truth file, with value lookup by linear interpolation between its steps."""

    def __init__(self, path: Path) -> None:
        self.rows: list[dict[str, Any]] = [json.loads(line) for line in path.open(encoding="utf-8")]
        self._series: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        for row in self.rows:
            if row["type"] == "value":
                ts, vs = self._series.setdefault((row["device"], row["kind"]), ([], []))
                ts.append(row["t"])
                vs.append(row["value"])

    def value(self, device: str, kind: str, t: float) -> float:
        ts, vs = self._series[(device, kind)]
        k = min(max(bisect.bisect_left(ts, t), 1), len(ts) - 1)
        return float(vs[k - 1] + (vs[k] - vs[k - 1]) * (t - ts[k - 1]) / (ts[k] - ts[k - 1]))

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["type"] == type_]

    def faults(self, fault: str) -> list[dict[str, Any]]:
        return [r for r in self.of_type("fault") if r["fault"] == fault]
