"""Identifier rules shared by topics, configs and the registry.

Identifiers end up in MQTT topic levels and InfluxDB tags, so they are restricted to characters
that need no escaping anywhere and can never be MQTT wildcards (`+`, `#`) or level separators.
Human-readable names (Japanese included) live in separate `name` fields.
"""

import re
from typing import Annotated

import msgspec

# `(?!\n)$`, not plain `$`: in Python `$` also matches before a final newline, so "gw01\n" would
# pass; `\Z` would be exact but is not a JSON-Schema (ECMA 262) regex, and the schemas reuse this.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?!\n)$"
_ID_RE = re.compile(ID_PATTERN)

Ident = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]


def is_ident(value: str) -> bool:
    return _ID_RE.match(value) is not None
