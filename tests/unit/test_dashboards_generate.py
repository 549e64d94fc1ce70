"""The dashboards as code (cloud/dashboards/): the committed JSON is the generator's output, and
`bosai dashboards generate` writes and checks it.  What the queries return is checked against a
real InfluxDB in tests/integration/test_dashboards.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bosai.cli import main
from bosai.paths import DASHBOARDS_DIR
from cloud.dashboards import grafana as g
from cloud.dashboards import influxql as q
from cloud.dashboards.generate import dashboards, stale, to_text

COMMITTED = DASHBOARDS_DIR / "json"
UIDS = ["bosai-overview", "bosai-rivers", "bosai-snow", "bosai-slopes", "bosai-gateways"]


def test_committed_json_is_the_generators_output() -> None:
    problems = stale(COMMITTED)
    assert not problems, "\n".join([*problems, "run 'bosai dashboards generate' and commit dashboards/json/"])


def test_the_five_dashboards_in_menu_order_with_fixed_uids() -> None:
    assert list(dashboards()) == UIDS


def test_generation_is_deterministic() -> None:
    assert [to_text(d) for d in dashboards().values()] == [to_text(d) for d in dashboards().values()]


def test_generate_writes_one_file_per_uid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboards", "generate", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{uid}.json" for uid in UIDS)
    for uid in UIDS:
        d = json.loads((tmp_path / f"{uid}.json").read_text(encoding="utf-8"))
        assert d["uid"] == uid and d["schemaVersion"] == 39
    assert capsys.readouterr().out.count("wrote ") == 5
    assert main(["dashboards", "generate", "--out", str(tmp_path), "--check"]) == 0


def test_check_fails_on_a_stale_changed_or_extra_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["dashboards", "generate", "--out", str(tmp_path)])
    (tmp_path / "bosai-snow.json").write_text("{}", encoding="utf-8")
    (tmp_path / "bosai-rivers.json").unlink()
    (tmp_path / "hand-made.json").write_text("{}", encoding="utf-8")
    capsys.readouterr()
    assert main(["dashboards", "generate", "--out", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "bosai-snow.json: differs" in err and "bosai-rivers.json: missing" in err
    assert "hand-made.json: not generated" in err


def test_files_keep_japanese_readable() -> None:
    text = (COMMITTED / "bosai-rivers.json").read_text(encoding="utf-8")
    assert "河川" in text and "\\u" not in text


def test_layout_flows_on_the_24_column_grid_without_overlap() -> None:
    for uid, d in dashboards().items():
        cells: set[tuple[int, int]] = set()
        for p in d["panels"]:
            grid = p["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, (uid, p["title"])
            mine = {(grid["x"] + i, grid["y"] + j) for i in range(grid["w"]) for j in range(grid["h"])}
            assert not cells & mine, (uid, p["title"])
            cells |= mine
        assert [p["id"] for p in d["panels"]] == list(range(1, len(d["panels"]) + 1))


def test_repeated_rows_per_site_on_the_domain_dashboards() -> None:
    for uid in ("bosai-rivers", "bosai-snow", "bosai-slopes"):
        rows = [p for p in dashboards()[uid]["panels"] if p["type"] == "row"]
        assert [(r["title"], r.get("repeat")) for r in rows] == [("$site", "site")], uid


def test_a_panel_wider_than_the_grid_is_refused() -> None:
    wide = g.Panel(type="stat", title="x", description="x", width=25, height=1)
    with pytest.raises(ValueError, match="wider than the grid"):
        g.render(
            g.Dashboard(
                uid="u", title="t", description="d", variables=[], sections=[g.Section(panels=[wide])]
            )
        )


def test_influxql_builders() -> None:
    text = q.select(
        [q.agg("max", "value"), q.agg("last", "lat", "lat")],
        "thresholds",
        [q.tag_is("what", "level"), q.tag_in_variable("site_name", "site"), q.field_above("q", 0)],
        by_time=True,
        group_by=["level_name"],
        fill="previous",
    )
    assert text == (
        'SELECT max("value"), last("lat") AS "lat" FROM "thresholds" WHERE "what" = \'level\' AND '
        '"site_name" =~ /^$site$/ AND "q" > 0 AND $timeFilter GROUP BY time($__interval), "level_name" '
        "fill(previous)"
    )
    assert q.show_tag_values("site_status", "site_name", [q.tag_is("type", "river")]) == (
        'SHOW TAG VALUES FROM "site_status" WITH KEY = "site_name" WHERE "type" = \'river\' AND $timeFilter'
    )
    assert q.literal("it's") == "'it\\'s'" and q.ident('a"b') == '"a\\"b"'


def test_threshold_lines_are_dashed_and_coloured_by_level() -> None:
    overrides = g.threshold_overrides(["B", "C"], hidden_in_legend=["C"])
    dashed = [o for o in overrides if o["matcher"] == {"id": "byFrameRefID", "options": "B"}]
    assert dashed and dashed[0]["properties"][0]["id"] == "custom.lineStyle"
    colours = {
        o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
        for o in overrides
        if o["matcher"]["id"] == "byRegexp"
    }
    assert colours == {
        "^1 .*": "blue",
        "^2 .*": "yellow",
        "^3 .*": "red",
        "^4 .*": "purple",
        "^5 .*": "dark-purple",
    }
