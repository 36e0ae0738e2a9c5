"""The Dagster UI in a real browser: headless Chromium (Debian's ``chromium`` package) driven by
Playwright, against ``dagster-webserver -w workspace.yaml`` over a DAGSTER_HOME the demo filled.

No browser is downloaded: Playwright launches the system Chromium (``CHROMIUM`` env var, else
``chromium`` / ``chromium-browser`` on PATH, else /usr/bin/chromium). When it is missing or cannot
start, the tests FAIL, saying so. ``.ci/run`` installs it with apt-get when missing.

Screenshots go to ``build/ui-screenshots/``; with ``UPDATE_SCREENSHOTS=1`` (``make screenshots``)
also to ``docs/``, where the README shows them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloudglue_dagster import demo
from cloudglue_dagster.emulator import Dataset

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "build" / "ui-screenshots"
DOCS = REPO / "docs"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
TIMEOUT_MS = 30_000

# One xdist worker runs the module: its fixtures (the demo's backfill, the webserver) are made once.
pytestmark = [pytest.mark.browser, pytest.mark.processes, pytest.mark.xdist_group("ui"), pytest.mark.timeout(180)]


def chromium_path() -> str:
    """The system Chromium; fails the test (never skips) when there is none."""
    configured = os.environ.get("CHROMIUM")
    candidates = (
        [configured]
        if configured
        else [shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium"]
    )
    for path in candidates:
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    pytest.fail(
        "Chromium not found (looked for $CHROMIUM, `chromium`, `chromium-browser`, /usr/bin/chromium)."
        " The browser test needs it: `apt-get install chromium` on Debian (.ci/run does this),"
        " or set CHROMIUM=/path/to/chromium.",
        pytrace=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Served:
    url: str
    settings: demo.Settings
    dataset: Dataset
    log_path: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The demo's backfill (its default two weeks) into a temporary DAGSTER_HOME, then
    ``dagster-webserver -w workspace.yaml`` on a free loopback port over that home."""
    home = tmp_path_factory.mktemp("ui") / "dagster_home"
    start, end = demo.resolve_window(None, demo.DEFAULT_DAYS, dt.datetime.now(dt.timezone.utc).date())
    settings = demo.Settings(home=home, duckdb=home / "warehouse.duckdb", start=start, end=end)
    with open(home.parent / "demo.out", "w") as out:
        demo.run_demo(settings, out=out)
    port = free_port()
    # The emulator is stopped: the webserver only reads the instance (no run is launched).
    env = demo.dagster_env(settings, "http://127.0.0.1:9/v1", "unused-key")
    log_path = home.parent / "webserver.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"dagster-webserver exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"dagster-webserver did not answer in 90 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.3)
            yield Served(url, settings, Dataset(start, end, per_day=settings.per_day, seed=settings.seed), log_path)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as exc:
        pytest.fail(f"Playwright's Python package is missing ({exc}): pip install -e '.[dev]'", pytrace=False)
    expect.set_options(timeout=TIMEOUT_MS)
    path = chromium_path()
    with sync_playwright() as p:
        try:
            chromium = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, timeout=60_000)
        except Exception as exc:  # noqa: BLE001 - any launch failure must fail the test, with its reason
            reason = f"Chromium at {path} cannot start: {exc}"
        else:
            reason = None
        if reason is not None:
            pytest.fail(reason, pytrace=False)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 820}, timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


@contextlib.contextmanager
def diagnosed(page, served: Served, name: str) -> Iterator[None]:
    """On failure, keep a screenshot and add what the page said and the webserver's log."""
    try:
        yield
    except Exception as exc:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / f"FAILED-{name}.png"
        with contextlib.suppress(Exception):
            page.screenshot(path=str(shot))
        text = ""
        with contextlib.suppress(Exception):
            text = page.inner_text("body")[-2000:]
        log = served.log_path.read_text(errors="replace")[-3000:]
        raise AssertionError(
            f"{exc}\n\n--- page {page.url} (screenshot {shot}) ---\n{text}\n\n--- webserver log ---\n{log}"
        ) from exc


def save(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(SHOTS / name, DOCS / name)


def test_asset_graph_shows_both_sources_and_the_edges_between_the_tables(page, served: Served):
    with diagnosed(page, served, "asset-graph"):
        check_asset_graph(served, page)


def test_token_usage_page_shows_its_latest_materialization_metadata(page, served: Served):
    with diagnosed(page, served, "token-usage"):
        check_token_usage_page(served, page)


def check_asset_graph(served: Served, page) -> None:
    from playwright.sync_api import expect

    page.goto(f"{served.url}/asset-groups/cloudglue")
    # The lineage graph is an SVG: one foreignObject per asset node, one path with an arrow per edge.
    graph = page.locator("svg:has(foreignObject)")
    chat = graph.locator("foreignObject").filter(has_text="chat_completions")
    usage = graph.locator("foreignObject").filter(has_text="token_usage")
    expect(chat).to_have_count(1)
    expect(usage).to_have_count(1)
    edges = graph.locator("path[marker-end]")
    expect(edges.first).to_be_attached()

    # Materialized partitions and the asset checks (all passed), as the nodes show them.
    days = served.settings.days
    all_passed = re.compile(r"(\d+) / \1 Passed")
    for node in (chat, usage):
        expect(node).to_contain_text(f"{days} partitions")
        expect(node).to_contain_text("100% filled")
        expect(node).to_contain_text(all_passed)

    # An edge is drawn from chat_completions' right side to token_usage's left side: the ends of
    # the rendered paths, in viewport coordinates, against the nodes' boxes.
    page.wait_for_timeout(300)  # let the graph settle after its zoom-to-fit
    c, u = chat.bounding_box(), usage.bounding_box()
    assert c and u, "asset nodes have no layout box"
    ends = edges.evaluate_all(
        """paths => paths.map(p => {
            const m = p.getScreenCTM();
            const at = q => ({x: m.a * q.x + m.c * q.y + m.e, y: m.b * q.x + m.d * q.y + m.f});
            return [at(p.getPointAtLength(0)), at(p.getPointAtLength(p.getTotalLength()))];
        })"""
    )
    slack = 0.1 * c["width"]

    def near_right(point, box) -> bool:
        return (
            abs(point["x"] - (box["x"] + box["width"])) <= slack and box["y"] <= point["y"] <= box["y"] + box["height"]
        )

    def near_left(point, box) -> bool:
        return abs(point["x"] - box["x"]) <= slack and box["y"] <= point["y"] <= box["y"] + box["height"]

    linking = [e for e in ends if near_right(e[0], c) and near_left(e[1], u)]
    assert len(linking) == 1, f"no single edge chat_completions -> token_usage: nodes {c}, {u}; edge ends {ends}"

    # The second source: responses, and llm_usage fed by token_usage and responses.
    responses = graph.locator("foreignObject").filter(has_text="responses")
    spend = graph.locator("foreignObject").filter(has_text="llm_usage")
    expect(responses).to_have_count(1)
    expect(spend).to_have_count(1)
    for node in (responses, spend):
        expect(node).to_contain_text(f"{days} partitions")
        expect(node).to_contain_text("100% filled")
    expect(responses).to_contain_text(all_passed)
    r, s = responses.bounding_box(), spend.bounding_box()
    assert r and s, "asset nodes have no layout box"
    for source, name in ((u, "token_usage"), (r, "responses")):
        into = [e for e in ends if near_right(e[0], source) and near_left(e[1], s)]
        assert len(into) == 1, f"no single edge {name} -> llm_usage: nodes {source}, {s}; edge ends {ends}"
    save(page, "asset-graph.png")


def check_token_usage_page(served: Served, page) -> None:
    from playwright.sync_api import expect

    last = served.settings.end
    truth = served.dataset.ground_truth(last)
    page.goto(f"{served.url}/assets/cloudglue/token_usage")
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    expect(page.get_by_text(last.isoformat(), exact=True).first).to_be_visible()  # its partition

    def metadata_row(key: str, value: int):
        # A row of the Metadata table (the Columns table lists the same names, without values)
        # whose value cell is exactly ``value``.
        return (
            page.get_by_role("row")
            .filter(has=page.get_by_text(key, exact=True))
            .filter(has=page.get_by_text(str(value), exact=True))
        )

    # The latest materialization's metadata: the last day's totals, as the emulator served them.
    expect(metadata_row("total_tokens", truth.total_tokens)).to_have_count(1)
    expect(metadata_row("prompt_tokens", truth.prompt_tokens)).to_have_count(1)
    expect(metadata_row("completions_without_usage", truth.no_usage)).to_have_count(1)
    expect(metadata_row("dagster/partition_row_count", len(truth.by_model))).to_have_count(1)

    # Token totals plotted over the partitions (the Metadata section's Plots view, by partition).
    page.set_viewport_size({"width": 1400, "height": 1300})
    page.get_by_text("Plots", exact=True).click()
    expect(page.get_by_text("total_tokens", exact=True).last).to_be_visible()
    expect(page.locator("canvas").first).to_be_visible()  # the charts
    page.get_by_text("Metadata", exact=True).first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(800)  # the charts animate in
    save(page, "token-usage.png")
