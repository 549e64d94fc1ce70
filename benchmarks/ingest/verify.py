"""Zero loss, zero duplicates: the database against the exact set of points that was published.

Every series of `readings` (VictoriaMetrics stores the fields as `readings_value` and `readings_q`)
is exported and compared with the load generator's expectation for its sensor: each expected
sample time present exactly once, with the right value (q = 0, ok), the right tags, and nothing else.
The export is streamed, one series per line, so millions of points need no more memory than one
series.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.loadgen import LoadSpec, SeriesExpectation, sample_time_ms

FIELDS = ("value", "q")  # readings_value: the level; readings_q: 0 (ok)
EXAMPLES = 5  # problems quoted in the report, per kind


@dataclass
class Verdict:
    expected_points: int = 0
    found_points: int = 0  # samples exported for the expected sensors, both fields counted apart
    missing: int = 0  # expected (series, time) absent
    duplicates: int = 0  # (series, time) stored more than once
    wrong_values: int = 0
    unexpected: int = 0  # samples at times (or of sensors) nothing was published for
    bad_tags: int = 0  # series whose tags differ from cloud.points.reading_line's
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.wrong_values or self.unexpected or self.bad_tags)

    def note(self, text: str) -> None:
        if len(self.examples) < 4 * EXAMPLES:
            self.examples.append(text)


def export(url: str, match: str) -> Iterator[dict[str, Any]]:
    query = urllib.parse.urlencode({"match[]": match, "start": "0"})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=600) as resp:
        for raw in resp:
            if raw.strip():
                yield json.loads(raw)


def verify(url: str, spec: LoadSpec, expected: Mapping[str, SeriesExpectation], tenant: str) -> Verdict:
    """Compare what VictoriaMetrics at `url` holds for `tenant` with `expected` (sensor id -> series)."""
    verdict = Verdict(expected_points=sum(e.count for e in expected.values()) * len(FIELDS))
    for name in FIELDS:
        seen: set[str] = set()
        for row in export(url, f'{{__name__="readings_{name}",tenant="{tenant}"}}'):
            metric: dict[str, str] = row["metric"]
            sensor = metric.get("sensor", "?")
            e = expected.get(sensor)
            if e is None:
                verdict.unexpected += len(row["timestamps"])
                verdict.note(
                    f"readings_{name}: {len(row['timestamps'])} samples of unexpected series {metric}"
                )
                continue
            if sensor in seen:  # a second series for one sensor: its tags differ from the first's
                verdict.bad_tags += 1
                verdict.note(f"readings_{name}: sensor {sensor} stored in more than one series: {metric}")
            seen.add(sensor)
            tags = {k: v for k, v in metric.items() if k not in ("__name__", "db")}
            if tags != e.tags():
                verdict.bad_tags += 1
                verdict.note(f"readings_{name}: tags of {sensor} are {tags}, expected {e.tags()}")
            compare_series(verdict, spec, e, name, row["timestamps"], row["values"])
        for sensor in expected.keys() - seen:
            verdict.missing += expected[sensor].count
            verdict.note(f"readings_{name}: no series for {sensor} ({expected[sensor].count} samples)")
    return verdict


def compare_series(
    verdict: Verdict, spec: LoadSpec, e: SeriesExpectation, name: str, times: list[int], values: list[float]
) -> None:
    verdict.found_points += len(times)
    counts: dict[int, int] = {}
    for t, v in zip(times, values, strict=True):
        offset = t - spec.t0_ms
        n, rest = divmod(offset, spec.interval_ms)
        if rest or not 0 <= n < e.count:
            verdict.unexpected += 1
            verdict.note(f"readings_{name}: {e.id} has a sample at {t} ms, which was never published")
            continue
        counts[n] = counts.get(n, 0) + 1
        want = e.value(n) if name == "value" else 0.0
        if v != want:
            verdict.wrong_values += 1
            verdict.note(f"readings_{name}: {e.id} at {t} ms is {v}, expected {want}")
    extra = sum(c - 1 for c in counts.values())
    if extra:
        verdict.duplicates += extra
        verdict.note(f"readings_{name}: {e.id} has {extra} duplicate samples")
    missing = e.count - len(counts)
    if missing:
        verdict.missing += missing
        first = next(n for n in range(e.count) if n not in counts)
        verdict.note(
            f"readings_{name}: {e.id} lacks {missing} of {e.count} samples, "
            f"the first at {sample_time_ms(spec, first)} ms"
        )
