"""Alert latency under load, and the consumer's cost as the number of sensors grows (issue 9).

    .venv/bin/python -m benchmarks.latency                                  # 100, 1k, 10k sensors
    .venv/bin/python -m benchmarks.latency --sensors 1000 --rate 150        # at a chosen load

Each sensor count runs against a fresh broker, database and consumer, all real: a Mosquitto
configured as deployed (benchmarks/ingest/infra.py), VictoriaMetrics, and `bosai cloud run` as
its own process with validation, detection, the fsync'd spool and a generic webhook notifier
pointing at an HTTP server in the benchmark process.

- **Background**: N sensors on gateways of 10, each gateway sending one QoS 1 message with one
  sample of each of its sensors every `--interval` s (readings/s = N / interval), from
  benchmarks/loadgen.py publisher processes at that rate; or `--rate` messages/s in all.
- **Probe**: its own gateway and river gauge (benchmarks/latency/probe.py) publishes, every
  `--probes-every` s, a reading above the gauge's first threshold, and half a period later one
  below threshold - clear_margin, so every crossing raises a new episode.  Its quality checks are
  loosened so the step is not held back as a spike: the alert is raised on the crossing reading
  itself, which the benchmark checks (a notification is matched to its probe by the sample time
  it carries).
- **Notification latency**: the webhook POST's arrival minus time.time() just before the probe's
  publish.  Every probe must be notified, else the run fails and names the ones missed.
- **Publish -> queryable**: a poller asks VictoriaMetrics (`/api/v1/export`) every 10 ms for the
  probe's pending points.  It is bounded below by the consumer's store linger (`flush_interval_ms`,
  1000 ms by default, as deployed) and VictoriaMetrics' own buffering of fresh samples.
- **Consumer**: CPU (utime + stime from /proc over the window, % of one core), VmRSS at the end
  and its peak, time from process start to subscribed (registry loading included), and its own
  `bosai_consumer_alert_latency_seconds` histogram (message arrival -> alert handed to outputs).

Results: a Markdown table and one JSON line on stdout, progress on stderr.  Exit code 0 only if
every probe was notified and became queryable in every run.
"""

from __future__ import annotations
