"""The wire contract shared by the edge agent and the cloud consumer.

Everything that crosses MQTT is defined here and nowhere else: topic names, the telemetry,
status and alert messages, and their validation.  Both sides import this package; the cloud
never imports `edge` and the gateway never needs numpy/scipy.  See docs/wire-contract.md.
"""

from wire.telemetry import (
    SCHEMA_VERSION,
    DecodeError,
    Quality,
    Reading,
    RejectReason,
    Telemetry,
    decode_telemetry,
    encode,
)

__all__ = [
    "SCHEMA_VERSION",
    "DecodeError",
    "Quality",
    "Reading",
    "RejectReason",
    "Telemetry",
    "decode_telemetry",
    "encode",
]
