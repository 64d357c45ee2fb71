"""``harness leaderboard render``: the files, escaping, errors, tolerance, determinism, and
the page in a real headless browser (Debian's chromium through chromedriver)."""

from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.board.board_view import pick_groups
from harness.board.html_page import build_page
from harness.board.latency_plot import draws_panel, latency_plots, load_cells
from harness.board.ranking import pareto_front
from harness.board.render import render_leaderboard
from harness.errors import ConfigError, OutputDirError
from tests.harness.board.conftest import HOSTILE, HOSTILE_MATH, _cell, make_board

PNG = b"\x89PNG\r\n\x1a\n"
EXPECTED_PLOTS = {"defense_frontier.png", "ea_heatmap_digits_cnn.png", "latency_digits_cnn.png",
                  "budget_curves.png"}


class _Resources(HTMLParser):
    """Every src/href and every <script> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.links += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "action")]


def _parse(html: str) -> _Resources:
    parser = _Resources()
    parser.feed(html)
    return parser


def test_render_writes_the_page_and_plots(board_dir: Path) -> None:
    report = render_leaderboard(board_dir, benchmarks_dir=board_dir / "bench")
    assert report.index == board_dir / "index.html"
    assert {p.name for p in report.plots} == EXPECTED_PLOTS
    for path in report.plots:
        assert path.parent == board_dir / "plots" and path.read_bytes().startswith(PNG)
        assert oct(path.stat().st_mode & 0o777) == "0o644"
    html = report.index.read_text()
    page = _parse(html)
    assert page.scripts == 1  # the sorter only: the hostile labels made none
    for link in page.links:  # nothing from the network: relative images and anchors only
        assert link.startswith(("#", "plots/")), link
        if link.startswith("plots/"):
            assert (board_dir / link).is_file()
    assert sorted(link for link in page.links if link.startswith("plots/")) == sorted(
        f"plots/{p.name}" for p in report.plots)
    assert ('0.120<br><span class="sub">provisional: attack below capacity: exit_steal</span>'
            in html)
    assert 'id="remote-attacks"' in html and "0.612" in html  # apart from the ranking
    # the jitter cell predates the histogram: its panel is left out, and the page says so
    assert any("jitter" in n and "query_latency_histogram" in n for n in report.notes)
    assert "the group with the most seeds" in " ".join(report.notes)  # exit_steal x jitter


def test_hostile_labels_are_escaped(board_dir: Path) -> None:
    html = render_leaderboard(board_dir).index.read_text()
    assert "<script>window.__pwned" not in html and 'onmouseover="window' not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;&quot; onmouseover=&quot;" in html
    assert HOSTILE_MATH in html  # plain text (and drawn as text, not mathtext, in the heatmap)


def test_same_board_gives_the_same_bytes(board_dir: Path, tmp_path: Path) -> None:
    first = render_leaderboard(board_dir, tmp_path / "a", board_dir / "bench")
    second = render_leaderboard(board_dir, tmp_path / "b", board_dir / "bench")
    for a, b in zip((first.index, *first.plots), (second.index, *second.plots), strict=True):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    assert all(b"matplotlib" not in p.read_bytes() for p in first.plots)  # no Software tag


def test_plots_without_data_are_skipped_with_notes(tmp_path: Path) -> None:
    (tmp_path / "leaderboard.json").write_text("{}")
    report = render_leaderboard(tmp_path)
    assert report.plots == ()
    text = " ".join(report.notes)
    assert "defense frontier: skipped" in text and "budget curves: skipped" in text
    assert "heatmap: skipped" in text
    html = report.index.read_text()
    assert "n/a (no defense ranking" in html and 'id="groups"' in html


def test_missing_or_broken_board_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OutputDirError, match=r"leaderboard\.json does not exist.*harness leaderboard build"):
        render_leaderboard(tmp_path)
    with pytest.raises(OutputDirError, match="is not a folder"):
        render_leaderboard(tmp_path / "nowhere")
    (tmp_path / "leaderboard.json").write_text('{"groups": [1,')
    with pytest.raises(ConfigError, match=r"leaderboard\.json is not valid JSON .*line 1"):
        render_leaderboard(tmp_path)
    (tmp_path / "leaderboard.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="holds a JSON list"):
        render_leaderboard(tmp_path)
    (tmp_path / "leaderboard.json").write_text("{}")
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputDirError, match="is a file"):
        render_leaderboard(tmp_path, tmp_path / "file")


def test_heatmap_picks_the_group_with_most_seeds() -> None:
    rows = [g for g in make_board()["groups"] if g["defense"] == "jitter"]
    chosen, notes = pick_groups(rows)
    assert list(chosen) == [("exit_steal", "jitter")]
    assert chosen[("exit_steal", "jitter")]["group_id"] == "g-es-jit"
    assert len(notes) == 1 and "2 groups" in notes[0] and "3 seeds" in notes[0]


points = st.lists(st.tuples(st.floats(-2, 5, allow_nan=False), st.floats(0, 1, allow_nan=False)),
                  min_size=1, max_size=12)


@given(points)
def test_pareto_front_is_exactly_the_undominated_points(pts: list[tuple[float, float]]) -> None:
    front = pareto_front(pts)

    def dominated(p: tuple[float, float]) -> bool:
        return any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in pts)

    assert set(front) == {i for i, p in enumerate(pts) if not dominated(p)}
    assert [pts[i] for i in front] == sorted(pts[i] for i in front)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8)
                           | st.floats(allow_nan=True, allow_infinity=True),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _mutate(obj: Any, data: st.DataObject, depth: int = 0) -> Any:
    """Drop keys and swap values for arbitrary JSON, at random places of the board."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            choice = data.draw(st.integers(0, 9))
            if choice == 0:
                continue
            out[k] = data.draw(json_values) if choice == 1 else _mutate(v, data, depth + 1)
        return out
    if isinstance(obj, list) and depth < 4:
        return [_mutate(v, data, depth + 1) for v in obj]
    return obj


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_page_survives_missing_and_unexpected_fields(data: st.DataObject) -> None:
    board = _mutate(make_board(), data)
    html = build_page(board, [("plots/x.png", "<b>caption</b>")], ["<note>"])
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<note>" not in html and "<b>caption" not in html
    assert _parse(html).scripts == 1


def test_wrong_types_everywhere_still_render(tmp_path: Path) -> None:
    board = {"groups": [None, 3, {"metrics": "x", "seeds": {}, "victim": ["a"], "threat": 5}],
             "defense_ranking": [{"costs": [], "worst_exit_agreement": "high", "rank": "1"},
                                 {"costs": {"latency_overhead_p50": float("inf")},
                                  "worst_exit_agreement": 0.5, "victim": None}],
             "attack_ranking": "none", "replica_agreement": [{"metrics": None}],
             "paired_differences": [{"ci95": [1]}], "cells": [], "command": {"x": 1}}
    (tmp_path / "leaderboard.json").write_text(json.dumps(board).replace("Infinity", "1e999"))
    report = render_leaderboard(tmp_path)
    assert report.index.is_file() and "n/a" in report.index.read_text()


# --- the page in a real browser -------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


def _browser(tmp_path: Path) -> Any:
    """A headless chromium through Debian's chromedriver (never Selenium Manager, which
    would download one); skip without them, but fail under CI=true, where they must be."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        reason = (f"the browser check needs {', '.join(missing)}: apt-get install chromium "
                  "chromium-driver (.ci/run does)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    return webdriver.Chrome(service=service, options=options)


def _column(driver: Any, table: str, metric: str) -> list[tuple[str, str]]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr')).map(r => "
        "[r.getAttribute('data-group-id'), "
        "(r.querySelector('td[data-metric=\"' + arguments[1] + '\"]') || {}).textContent]);",
        table, metric)


@pytest.mark.browser
def test_page_in_headless_chromium(board_dir: Path, tmp_path: Path) -> None:
    report = render_leaderboard(board_dir, benchmarks_dir=board_dir / "bench")
    board = json.loads((board_dir / "leaderboard.json").read_text())
    driver = _browser(tmp_path)
    try:
        driver.get(report.index.as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
            "i.naturalWidth]);")
        assert sorted(src for src, _, _ in images) == sorted(f"plots/{p.name}" for p in report.plots)
        assert all(done and width > 0 for _, done, width in images), images

        ids = [g.get("group_id", str(i)) for i, g in enumerate(board["groups"])]
        rows = _column(driver, "#groups", "exit_agreement")
        assert [gid for gid, _ in rows] == ids
        means = {g.get("group_id", str(i)): g["metrics"]["exit_agreement"]["mean"]
                 for i, g in enumerate(board["groups"])}
        assert dict(rows)["g-es-none"] == f"{means['g-es-none']:.3f}" == "0.710"
        assert dict(rows)["2"] == "n/a"
        assert driver.execute_script("return window.__pwned") is None  # escaped, never ran
        hostile = driver.execute_script(
            "return document.querySelector('#groups tr[data-group-id=\"g-hostile\"] td:nth-child(4)')"
            ".textContent;")
        assert hostile == HOSTILE

        header = driver.find_element(
            "xpath", "//table[@id='groups']/thead/tr/th[normalize-space()='exit agreement mean']")
        ranked = sorted(range(len(ids)), key=lambda i: (means[ids[i]] is None, means[ids[i]] or 0, i))
        header.click()
        assert [gid for gid, _ in _column(driver, "#groups", "exit_agreement")] == [ids[i] for i in ranked]
        assert header.get_attribute("aria-sort") == "ascending"
        header.click()  # descending: numbers reversed (ties keep page order), n/a stays last
        known = [i for i in ranked if means[ids[i]] is not None]
        down = sorted(known, key=lambda i: (-means[ids[i]], i)) + [i for i in ranked if i not in known]
        assert [gid for gid, _ in _column(driver, "#groups", "exit_agreement")] == [ids[i] for i in down]

        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(int(height) + 100, 12000))
        overflow = driver.execute_script(  # costs readable at 1400 px: no sideways scrolling
            "return Array.from(document.querySelectorAll('table[id^=\"defense-ranking\"]'))"
            ".map(t => [t.parentNode.scrollWidth, t.parentNode.clientWidth]);")
        assert overflow and all(full <= shown for full, shown in overflow), overflow
        shot = tmp_path / "leaderboard_page.png"
        assert driver.save_screenshot(str(shot)) and shot.read_bytes().startswith(PNG)
        if os.environ.get("HARNESS_SCREENSHOT_DIR"):
            target = Path(os.environ["HARNESS_SCREENSHOT_DIR"])
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, target / shot.name)
    finally:
        driver.quit()


def test_browser_gate_skips_here_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setitem(globals(), "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no-chromium.*apt-get install chromium"):
        _browser(tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: the browser check needs"):
        _browser(tmp_path)


def test_latency_panels_follow_declared_stages_not_names(tmp_path: Path) -> None:
    def cell(defense: str, stages: list[str] | None) -> dict:
        out = _cell(defense, 0, True)
        if stages is not None:
            out["components"]["defense"]["stages"] = stages
        return out

    cells = {"my_delay": cell("my_delay", ["shape_latency"]),  # a plugin: found by its stage
             "my_router": cell("my_router", ["admit", "choose_exits"]),
             "my_rounding": cell("my_rounding", ["perturb_outputs"]),  # no timing stage
             "jitter": cell("jitter", []),  # a recorded empty list wins over the name
             "timeguard": cell("timeguard", None),  # an older cell: the built-in names
             "none": cell("none", [])}
    for name, data in cells.items():
        path = tmp_path / "cells" / "digits_cnn" / name / "exit_steal" / "seed0-x.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(data))
    drawn = {str(p).split("/")[2] for p, _ in load_cells(tmp_path)}
    assert drawn == {"my_delay", "my_router", "timeguard", "none"}
    assert draws_panel(cells["none"]) and not draws_panel(cells["my_rounding"])
    plots = latency_plots({"groups": []}, tmp_path)
    assert list(plots.files) == ["latency_digits_cnn.png"]
    assert plots.captions["latency_digits_cnn.png"].split("cells: ")[1].startswith(
        "cells/digits_cnn/none/")  # the undefended panel comes first


def test_the_paired_table_says_what_each_difference_is_paired_under() -> None:
    from harness.board.html_page import _paired

    row = {"kind": "defense", "scenario": "digits_cnn", "a": "jitter", "b": "none",
           "metric": "exit_agreement", "mean": -0.1, "ci95": [-0.2, 0.0], "n": 3}
    html = _paired({"paired_differences": [{**row, "attack": "exit_steal"},
                                           {**row, "attack": "knockoff", "mean": 0.01},
                                           {**row, "kind": "attack", "a": "knockoff",
                                            "b": "exit_steal", "defense": "none"}]})
    rows = html.split("<tr>")[2:]
    assert len(rows) == 3 and rows[0] != rows[1]
    assert "attack exit_steal" in rows[0] and "attack knockoff" in rows[1]
    assert "defense none" in rows[2] and ">under<" in html
