"""Per-gateway sequence accounting: lost, duplicated and reordered messages.

Each gateway numbers its messages from a counter in its durable outbox, which survives restarts
and power cuts, and sends the counter's `stream` id with them (a new id means the numbering
started again, e.g. a replaced SD card).  Per gateway we keep the highest number seen and the
**gaps** below it, as ranges of numbers not yet seen:

- a number above the highest: in order; the numbers skipped become a gap and count as lost
  (for now: "not arrived yet");
- a number inside a gap: it arrives late, is counted as reordered, and is no longer lost.
  Gaps have no age limit, because after a long outage the gateway sends live data first and
  replays its backlog afterwards, possibly hours of numbers behind;
- a number at or below the highest and in no gap: a duplicate (QoS 1 redelivery, outbox replay
  after a crash);
- a new `stream` id: the gateway's counter was replaced; accounting restarts (counted in
  `resets`), and the old stream's gaps stay lost.  For a gateway that sends no stream id, a
  number far (more than `window`) below the highest that is in no gap is taken as such a
  restart, with a warning;
- numbers below the first one a consumer sees are not gaps (the consumer simply started later):
  they count as reordered, once.

At most `max_gaps` ranges are kept per gateway (the oldest are forgotten: those numbers stay
lost, and a late arrival of one counts as a duplicate), so memory stays bounded even for a
gateway that loses every other message.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 4096
DEFAULT_MAX_GAPS = 10_000
MAX_EARLY = 65_536  # numbers below the first seen, remembered to tell their duplicates


@dataclass
class GatewaySeq:
    first: int
    highest: int
    stream: str | None = None
    gap_starts: list[int] = field(default_factory=list)  # sorted; gap i is [gap_starts[i], gap_ends[i]]
    gap_ends: list[int] = field(default_factory=list)
    early: set[int] = field(default_factory=set)
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    resets: int = 0

    def gap_index(self, seq: int) -> int | None:
        i = bisect.bisect_right(self.gap_starts, seq) - 1
        return i if i >= 0 and seq <= self.gap_ends[i] else None

    def fill(self, i: int, seq: int) -> None:
        """Remove `seq` from gap i (splitting it when seq is inside)."""
        lo, hi = self.gap_starts[i], self.gap_ends[i]
        if lo == hi:
            del self.gap_starts[i], self.gap_ends[i]
        elif seq == lo:
            self.gap_starts[i] = seq + 1
        elif seq == hi:
            self.gap_ends[i] = seq - 1
        else:
            self.gap_ends[i] = seq - 1
            self.gap_starts.insert(i + 1, seq + 1)
            self.gap_ends.insert(i + 1, hi)


class SequenceTracker:
    def __init__(self, window: int = DEFAULT_WINDOW, max_gaps: int = DEFAULT_MAX_GAPS) -> None:
        self.window = window
        self.max_gaps = max_gaps
        self.gateways: dict[tuple[str, str], GatewaySeq] = {}
        self.changed: set[tuple[str, str]] = set()  # since the last save (cloud.sequence_store)

    def observe(self, tenant: str, gateway: str, seq: int, stream: str | None = None) -> str:
        """Account for one message; returns "new", "duplicate", "reordered" or "reset"."""
        key = (tenant, gateway)
        self.changed.add(key)
        g = self.gateways.get(key)
        if g is None:
            self.gateways[key] = GatewaySeq(first=seq, highest=seq, stream=stream)
            return "new"
        if stream is not None and stream != g.stream:
            if g.stream is None:  # an agent that starts sending its stream id: the same counter
                g.stream = stream
            else:
                log.warning(
                    "gateway %s/%s: new sequence stream %s (was %s) at %d; restarting its accounting "
                    "(was its outbox replaced?)",
                    tenant,
                    gateway,
                    stream,
                    g.stream,
                    seq,
                )
                return self._restart(g, seq, stream)
        if seq > g.highest:
            if seq > g.highest + 1:
                self._add_gap(g, g.highest + 1, seq - 1)
            g.highest = seq
            return "new"
        i = g.gap_index(seq)
        if i is not None:
            g.fill(i, seq)
            g.lost -= 1
            g.reordered += 1
            return "reordered"
        if g.stream is None and seq < g.highest - self.window:
            log.warning(
                "gateway %s/%s: sequence went back from %d to %d; restarting its accounting "
                "(did the gateway lose its sequence state?)",
                tenant,
                gateway,
                g.highest,
                seq,
            )
            return self._restart(g, seq, None)
        if seq < g.first and seq not in g.early:
            if len(g.early) >= MAX_EARLY:
                g.early.clear()
            g.early.add(seq)
            g.reordered += 1
            return "reordered"
        g.duplicated += 1
        return "duplicate"

    def _add_gap(self, g: GatewaySeq, lo: int, hi: int) -> None:
        g.gap_starts.append(lo)  # above every existing gap: the list stays sorted
        g.gap_ends.append(hi)
        g.lost += hi - lo + 1
        if len(g.gap_starts) > self.max_gaps:  # forget the oldest: those numbers stay lost
            del g.gap_starts[0], g.gap_ends[0]

    @staticmethod
    def _restart(g: GatewaySeq, seq: int, stream: str | None) -> str:
        g.first = g.highest = seq
        g.stream = stream
        g.gap_starts, g.gap_ends = [], []
        g.early = set()
        g.resets += 1
        return "reset"

    def totals(self) -> tuple[int, int, int]:
        """(lost, duplicated, reordered) over all gateways."""
        gs = list(self.gateways.values())
        return sum(g.lost for g in gs), sum(g.duplicated for g in gs), sum(g.reordered for g in gs)
