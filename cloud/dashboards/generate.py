"""The dashboards' JSON, as committed under dashboards/json/ (one file per uid)."""

from __future__ import annotations

import json
from pathlib import Path

from cloud.dashboards import gateways, overview, rivers, slopes, snow
from cloud.dashboards.grafana import Json, render

BUILDERS = (overview.build, rivers.build, snow.build, slopes.build, gateways.build)


def dashboards() -> dict[str, Json]:
    """Every dashboard's Grafana JSON by uid, in menu order."""
    rendered = [render(build()) for build in BUILDERS]
    return {d["uid"]: d for d in rendered}


def to_text(dashboard: Json) -> str:
    """The file form: stable key order, Japanese as is, a trailing newline."""
    return json.dumps(dashboard, ensure_ascii=False, indent=2) + "\n"


def write(out_dir: Path) -> list[Path]:
    """Write `<uid>.json` for every dashboard; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for uid, dashboard in dashboards().items():
        path = out_dir / f"{uid}.json"
        path.write_text(to_text(dashboard), encoding="utf-8")
        paths.append(path)
    return paths


def stale(out_dir: Path) -> list[str]:
    """What differs between `out_dir` and the generator's output (missing, changed or extra
    files); empty when they agree."""
    wanted = {f"{uid}.json": to_text(d) for uid, d in dashboards().items()}
    problems = []
    for name, text in wanted.items():
        path = out_dir / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from the generator's output")
    problems += [f"{p}: not generated" for p in sorted(out_dir.glob("*.json")) if p.name not in wanted]
    return problems
