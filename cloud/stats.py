"""The consumer's counters, as one snapshot: for the log line, `/metrics` and health points.

Counters count since the process started (Prometheus convention: a restart resets them, and
`rate()` copes with that); gauges (`*_depth`, `spool_*`) are the state at the snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class GatewaySequence:
    """Sequence accounting of one gateway (cloud.sequence)."""

    lost: int  # numbers skipped and not (yet) arrived
    duplicated: int  # numbers seen again (QoS 1 redelivery, outbox replay)
    reordered: int  # numbers that filled a gap late
    resets: int  # the gateway's counter started again


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """A histogram of seconds: cumulative counts per upper bound, Prometheus-style."""

    buckets: tuple[float, ...]  # upper bounds, ascending, without +Inf
    counts: tuple[int, ...]  # cumulative count per bucket, then one more for +Inf (= count)
    count: int
    sum: float


@dataclass
class ConsumerStats:
    messages: int
    readings_accepted: int
    readings_rejected: int  # readings rejected one by one (message-level rejections: messages_rejected)
    rejected_by_reason: dict[str, int]  # every rejection, message- or reading-level
    lines_written: int
    write_errors: int  # store requests that failed (unavailable, refused, writer bugs)
    alerts: int
    lost: int
    duplicated: int
    reordered: int
    messages_rejected: int = 0
    security_events: int = 0  # readings of sensors not registered to the sending gateway
    broker_security_events: dict[str, int] = field(default_factory=dict)  # auth_failed, acl_denied...
    rejected_by_gateway: dict[str, dict[str, int]] = field(default_factory=dict)  # "tenant/gateway"
    notifications_sent: int = 0
    notifications_pending: int = 0
    notifications_failed: int = 0  # given up or dropped
    # --- issue 6: durability and accounting ---
    sequences: dict[str, GatewaySequence] = field(default_factory=dict)  # "tenant/gateway"
    write_retries: int = 0  # store requests retried (server down, 429/503, timeouts)
    lines_rejected_by_store: int = 0  # lines the store refused as bad data (4xx), quarantined
    queue_depth: int = 0  # messages received, waiting for the worker
    ack_pending: int = 0  # messages processed, waiting for their lines to be durable to be acked
    spool_lines: int = 0  # lines in the disk spool not yet accepted by the store
    spool_bytes: int = 0
    spool_oldest_s: float = 0.0  # age of the oldest line waiting in the spool (0: empty)
    throttled_gateways: int = 0  # gateways currently rate-limited for flooding bad messages
    alert_latency: LatencySummary | None = None  # message received -> alert handed to outputs
    uptime_s: float = 0.0

    def summary(self) -> str:
        reasons = ",".join(f"{k}={v}" for k, v in sorted(self.rejected_by_reason.items())) or "none"
        return (
            f"messages={self.messages} accepted={self.readings_accepted} rejected={reasons} "
            f"written={self.lines_written} write_errors={self.write_errors} "
            f"spool={self.spool_lines} alerts={self.alerts} "
            f"notified={self.notifications_sent} notify_pending={self.notifications_pending} "
            f"notify_failed={self.notifications_failed} "
            f"lost={self.lost} duplicated={self.duplicated} reordered={self.reordered}"
        )
