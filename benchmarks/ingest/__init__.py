"""Ingest throughput benchmark (issue 9): gateways -> Mosquitto -> subject -> VictoriaMetrics.

    .venv/bin/python -m benchmarks.ingest --subject bosai --gateways 100 --sensors 10 --duration 60
    .venv/bin/python -m benchmarks.ingest --subject bosai --subject nodered ...   # and the ratio

Several subjects run one after another with the same messages, each against a fresh broker and
database, and the first one's messages/s is compared with each of the others'.  A subject plugs
in through benchmarks/ingest/subjects.py (`Subject`, `SUBJECTS`).

One run: a real Mosquitto (queue limits as deployed, benchmarks/ingest/infra.py) and a real
VictoriaMetrics on free loopback ports, the subject (benchmarks/ingest/subjects.py) subscribed
with a persistent session, then P publisher processes (benchmarks/loadgen.py) sending precomputed
telemetry of G gateways x S river level sensors, R readings per message, with QoS 1.

- **Saturation** (default): publishers send as fast as the broker takes it, paused while the
  broker holds more than `--backlog-seconds` of the subject's work (from the broker's $SYS count of
  held messages and the rate they leave at; never more than `--backlog-cap`, well below the
  broker's max_queued_messages, beyond which it would drop).  The subject was busy the whole window
  if the broker's backlog never fell to zero in it ("backlog min" in the results), and the drain
  after the window takes about that many seconds.
- `--rate N`: N messages/s in all (for latency runs at a fraction of saturation).

Measured over `--duration` s after `--warmup` s: messages/s and readings/s the subject handled,
from its own counter when it has one (bosai: `bosai_consumer_messages_received_total`), else from
the database's sample count at both ends of the window.  Then publishing stops, the runner waits
(at most `--drain-timeout` s) until the database holds everything the broker acknowledged, and
exports every series to check zero loss and zero duplicates: each expected (sensor, sample time)
present exactly once with its value, quality ok and tags as cloud/points.reading_line writes them.

Results: a Markdown table and one JSON line on stdout; progress on stderr.  Exit code 0 only if
the database holds exactly what was published.
"""

from __future__ import annotations

from benchmarks.ingest.subjects import SUBJECTS, BosaiConsumer, Environment, Subject, SubjectFactory

__all__ = ["SUBJECTS", "BosaiConsumer", "Environment", "Subject", "SubjectFactory"]
