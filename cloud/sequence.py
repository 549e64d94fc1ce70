"""Per-gateway sequence accounting: lost, duplicated and reordered messages (first version).

Each gateway numbers its messages with a sequence that survives restarts.  Per gateway we keep
the highest sequence seen and which of the last `window` numbers below it have arrived:

- a number above the highest: in order; any numbers skipped are counted as lost (for now);
- a number in the window already seen: a duplicate (QoS 1 redelivery, outbox replay);
- a number in the window not yet seen: it arrives late, so it is reordered and no longer lost;
- a number older than the window: too old to tell; the gateway has most likely lost its
  sequence state (a new SD card), so accounting restarts from it, with a warning.

Numbers below the first one a consumer sees are not gaps (the consumer simply started later);
they count as reordered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 4096


@dataclass
class GatewaySeq:
    first: int
    highest: int
    seen: set[int] = field(default_factory=set)
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    resets: int = 0


class SequenceTracker:
    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self.window = window
        self.gateways: dict[tuple[str, str], GatewaySeq] = {}

    def observe(self, tenant: str, gateway: str, seq: int) -> str:
        """Account for one message; returns "new", "duplicate", "reordered" or "reset"."""
        key = (tenant, gateway)
        g = self.gateways.get(key)
        if g is None:
            self.gateways[key] = GatewaySeq(first=seq, highest=seq, seen={seq})
            return "new"
        if seq > g.highest:
            g.lost += seq - g.highest - 1
            g.highest = seq
            g.seen.add(seq)
            if len(g.seen) > 2 * self.window:  # prune lazily, in one go
                floor = seq - self.window
                g.seen = {s for s in g.seen if s > floor}
            return "new"
        if seq in g.seen:
            g.duplicated += 1
            return "duplicate"
        if seq > g.highest - self.window:
            g.seen.add(seq)
            g.reordered += 1
            if seq > g.first:
                g.lost -= 1  # it was counted as a gap when a higher number arrived
            return "reordered"
        log.warning(
            "gateway %s/%s: sequence went back from %d to %d; restarting its accounting "
            "(did the gateway lose its sequence state?)",
            tenant,
            gateway,
            g.highest,
            seq,
        )
        g.first = g.highest = seq
        g.seen = {seq}
        g.resets += 1
        return "reset"

    def totals(self) -> tuple[int, int, int]:
        """(lost, duplicated, reordered) over all gateways."""
        gs = list(self.gateways.values())
        return sum(g.lost for g in gs), sum(g.duplicated for g in gs), sum(g.reordered for g in gs)
