"""Loading YAML config files into typed structs, with errors that say where.

Every config error names the file, the entity and the field, e.g.

    gateways/gw01.yaml: sensors[2] (id 'river-01'): field 'unit_id': Expected `int`, got `str`

and is raised at load time, before anything connects.  Both the edge and the cloud use this.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec
import yaml

T = TypeVar("T")


class HasId(Protocol):
    @property
    def id(self) -> str: ...


E = TypeVar("E", bound=HasId)


class ConfigError(Exception):
    """A config file is unusable.  `str(err)` is the message to show the user."""

    def __init__(self, path: str | Path, where: str, message: str) -> None:
        self.path = str(path)
        self.where = where
        self.message = message
        super().__init__(f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}")


# libyaml's safe loader when PyYAML was built with it: 10x faster than the pure-Python one, which
# took 5 s for a registry of 10 000 sensors (benchmarks.latency).  Same documents, same errors.
_SAFE_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(p, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(p, "", f"cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)  # a safe loader: plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(p, where, f"invalid YAML: {problem}") from None


def load(path: str | Path, type_: type[T]) -> T:
    """Read `path` and convert it to `type_` (a msgspec Struct), or raise ConfigError."""
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(path, "", "file is empty")
    return convert(raw, type_, path)


def convert(raw: Any, type_: type[T], path: str | Path) -> T:
    try:
        return msgspec.convert(raw, type_, strict=True)
    except msgspec.ValidationError as exc:
        raise located_error(path, raw, str(exc)) from None


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[(?:'|\")(.*?)(?:'|\")\]")


def located_error(path: str | Path, raw: Any, msgspec_message: str) -> ConfigError:
    """Turn msgspec's `... - at `$.sensors[2].unit_id`` into file / entity / field wording."""
    m = _AT.match(msgspec_message)
    assert m is not None
    message = m.group("msg")
    json_path = m.group("path") or "$"
    steps: list[str | int] = []
    for step in _STEP.finditer(json_path[1:]):
        key, index, quoted = step.groups()
        steps.append(int(index) if index is not None else (key if key is not None else quoted))
    # "Object contains unknown field `x`" names the field in the message, not in the path.
    unknown = re.match(r"Object contains unknown field `(.+)`", message)
    if unknown:
        steps.append(unknown.group(1))
        message = "unknown field (check spelling)"
    missing = re.match(r"Object missing required field `(.+)`", message)
    if missing:
        steps.append(missing.group(1))
        message = "required field is missing"
    return ConfigError(path, describe_location(raw, steps), message)


def describe_location(raw: Any, steps: list[str | int]) -> str:
    """`sensors[2] (id 'river-01'): field 'unit_id'` for steps ['sensors', 2, 'unit_id']."""
    parts: list[str] = []
    node: Any = raw
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        if isinstance(step, int):
            label = f"[{step}]"
            child = node[step] if isinstance(node, list) and step < len(node) else None
            if isinstance(child, dict) and isinstance(child.get("id"), str):
                label += f" (id {child['id']!r})"
            if parts:
                parts[-1] += label
            else:
                parts.append(label)
            node = child
        else:
            parts.append(f"field {step!r}" if last else step)
            node = node.get(step) if isinstance(node, dict) else None
    return ": ".join(parts) if parts else "top level"


def resolve(config_path: str | Path, relative: str) -> Path:
    """Paths inside a config file are relative to that file, not to the working directory."""
    p = Path(relative)
    return p if p.is_absolute() else Path(config_path).parent / p


def read_secret(config_path: str | Path, where: str, relative: str) -> str:
    """The secret (first line) of the file named by a config field, or ConfigError.

    Refuses a file that group or others can read: a leaked gateway password lets anyone publish
    as that gateway, a leaked store token writes into every tenant's data.  The secret itself
    never appears in a message.
    """
    path = resolve(config_path, relative)
    check_private(config_path, where, path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(config_path, where, f"cannot read {path}: {exc.__class__.__name__}") from None
    lines = text.splitlines()
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise ConfigError(config_path, where, f"{path} is empty")
    return secret


def check_private(config_path: str | Path, where: str, path: Path) -> None:
    """ConfigError unless `path` exists and only its owner may read it (mode 0600 or stricter)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(config_path, where, f"file {path} not found (it does not exist)") from None
    except OSError as exc:
        raise ConfigError(config_path, where, f"cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            config_path,
            where,
            f"{path} can be read by group or others (mode {stat.filemode(mode)}); "
            f"refusing to use it: run 'chmod 600 {path}'",
        )


def index_by_id(path: str | Path, section: str, items: Iterable[E]) -> dict[str, E]:
    """The entities of a list section keyed by id, or ConfigError on the first repeated id."""
    out: dict[str, E] = {}
    for i, item in enumerate(items):
        if item.id in out:
            raise ConfigError(path, f"{section}[{i}] (id {item.id!r}): field 'id'", "duplicate id")
        out[item.id] = item
    return out
