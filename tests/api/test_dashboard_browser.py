"""The dashboard in a real headless Chromium: log in through the form, check that the charts
and numbers rendered, and save a full-page screenshot.

A uvicorn server runs in a thread on a free loopback port, serving a shop with two
registered model versions, a running A/B test with simulated visitors, KPI snapshots, a
drift check, alerts, a job and audience segments. Chromium is Debian's (``apt-get install
chromium``), driven by Playwright; no browser is ever downloaded. The screenshot goes to
``$TAILOR_TEST_ARTIFACTS/dashboard.png`` (default ``test-artifacts/``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from tailor.api.charts import MARKED, fmt_rate
from tailor.config import AlertSettings
from tailor.lifecycle import alerts, attribution, journal, registry
from tailor.lifecycle.drift import Reference
from tailor.recommend.service import RecommendationService
from tests.api._serving import auth, save_model, serve
from tests.lifecycle._traffic import EVERYONE, Shop, start_ab, visit

INSTALL = "install Debian's chromium (apt-get install chromium) and the playwright package"
MIN_PNG_BYTES = 10_000


def _chromium() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip(f"playwright cannot be imported: {INSTALL}")
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        pytest.skip(f"no chromium on PATH or at /usr/bin/chromium: {INSTALL}")
    return found


@contextmanager
def running(app) -> Iterator[str]:
    """``app`` served by uvicorn (lifespan included) in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


class SessionClient(httpx.Client):
    """Each simulated visitor's events in one session (tests/lifecycle/_traffic.visit sends
    none), so that the KPIs have sessions to compute revenue per session from."""

    def post(self, url, *, json=None, **kwargs):
        for event in (json or {}).get("events", []):
            event.setdefault("context", {}).setdefault("session_id", f"s-{event['subject_id']}")
        return super().post(url, json=json, **kwargs)


def _register(served, folder: Path) -> tuple[str, str]:
    """The itemknn model as production and a popularity model, both registered with
    metrics (as tests/lifecycle/_traffic.open_shop does)."""
    store = served.tenants["default"].workspace.store
    versions = []
    for name, model, ndcg in (("model", None, 0.182), ("other", "popularity", 0.094)):
        path = folder / name
        service = (
            save_model(served.tenants["default"].workspace, path, model)
            if model
            else RecommendationService.load(path)
        )
        registry.register(
            store,
            "recommend",
            path,
            version=service.version,
            metrics={"ndcg_at_10": ndcg, "recall_at_10": ndcg * 1.7},
        )
        versions.append(service.version)
    registry.promote(store, "recommend", versions[0], by="test", reason="first model")
    return versions[0], versions[1]


def _demo_data(shop: Shop) -> None:
    store, now = shop.store, datetime.now(UTC)
    start_ab(shop)
    assert shop.serving.follow_experiments()
    rates = {"control": 0.12, "treatment": 0.3}
    for batch in range(4):
        users = range(150 * batch, 150 * (batch + 1))
        visit(shop, users, lambda arm: rates[arm], seed=batch, purchase_rate=0.4)
        # Real KPIs of the traffic so far; only their times are spread over the past hours,
        # as the worker's hourly snapshots would be (all the traffic happened just now).
        rows = attribution.version_kpis(store)
        at = now - timedelta(hours=3 - batch)
        journal.write(store, "kpi", {"window_hours": 24.0, "versions": rows}, at=at)
    # A drift check as the worker's drift job records it, from checks of simulated
    # distributions: one feature moved.
    rng = np.random.default_rng(7)
    features = {}
    for name, shift in (
        ("purchase_value", 0.0),
        ("basket_lines", 0.02),
        ("daily_events", 0.5),
        ("daily_items", 0.05),
    ):
        check = Reference.fit(rng.lognormal(1.0, 0.5, 5000)).check(
            rng.lognormal(1.0 + shift, 0.5, 2000)
        )
        features[name] = check.summary()
    journal.write(store, "drift", {"features": features})
    settings = AlertSettings()  # no webhook
    alerts.raise_alert(store, settings, "drift", "drift in daily_events: retraining scheduled")
    alerts.raise_alert(store, settings, "test", "<script>window.pwned = 1</script>")
    store.lease_job("kpis", "test", now=now, until=now + timedelta(minutes=1))
    store.finish_job(
        "kpis",
        "test",
        status="ok",
        message="KPIs of 2 version(s) over 24 h; 0 alert(s)",
        finished_at=now,
        next_run_at=now + timedelta(minutes=15),
    )
    # Audience scores as `tailor audience score` stores them; only the segment is read here
    # (tests/audience covers the scoring).
    segments = ["loyal"] * 40 + ["promising"] * 25 + ["at risk"] * 12 + ["lost"] * 5
    store.replace_scores(
        "audience",
        [f"s{k}" for k in range(len(segments))],
        [json.dumps({"segment": s}) for s in segments],
        now,
    )


def test_the_dashboard_renders_in_chromium(tmp_path, capsys):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    served = serve(tmp_path, consent=EVERYONE)
    control, treatment = _register(served, tmp_path)
    token = served.tokens["admin"]
    artifacts = Path(os.environ.get("TAILOR_TEST_ARTIFACTS", "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = (artifacts / "dashboard.png").resolve()
    try:
        with running(served.app) as url, SessionClient(base_url=url, timeout=30) as client:
            store = served.tenants["default"].workspace.store
            shop = Shop(served, client, store, control, treatment)  # type: ignore[arg-type]
            _demo_data(shop)
            data = client.get("/v1/admin/dashboard", headers=auth(token)).json()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, headless=True)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    try:
                        _check_page(page, url, token, data, control, treatment)
                    finally:  # a failed check's page is worth seeing too
                        page.screenshot(path=str(shot), full_page=True)
                finally:
                    browser.close()
    finally:
        for tenant in served.tenants.values():
            tenant.workspace.close()
    with capsys.disabled():
        print(f"\ndashboard screenshot: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > MIN_PNG_BYTES


def _check_page(page, url: str, token: str, data: dict, control: str, treatment: str) -> None:
    first = page.goto(f"{url}/dashboard")
    assert first is not None and first.status == 401
    page.fill("input[name=key]", token)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=kpis]", timeout=15_000)
    assert page.url == f"{url}/dashboard"

    # KPIs over time: one line per model version through the four snapshots.
    lines = page.locator("[data-testid=chart-kpi-ctr] polyline.series")
    assert lines.count() == 2
    for k in range(2):
        assert len(lines.nth(k).get_attribute("points").split()) == 4
    latest = data["kpis"]["latest"]["versions"]
    assert {row["model_version"] for row in latest} == {control, treatment}
    for row in latest:
        shown = page.locator(f'[data-testid=kpi-ctr][data-version="{row["model_version"]}"]')
        assert shown.inner_text() == fmt_rate(row["ctr"]) and row["ctr"] > 0

    # Drift: a bar per feature, the drifted ones in red.
    features = data["drift"]["features"]
    bars = page.locator("[data-testid=chart-drift] rect.bar")
    assert bars.count() == len(features) == 4
    for k in range(bars.count()):
        bar = bars.nth(k)
        drifted = features[bar.get_attribute("data-label")]["drifted"]
        assert (bar.get_attribute("fill") == MARKED) == drifted
    assert features["daily_events"]["drifted"]

    # The experiment, its verdict and its charts.
    assert page.locator("[data-testid=experiment-name]").inner_text() == "ranker-test"
    verdict = data["experiments"][0]["result"]["verdict"]
    assert verdict and page.locator("[data-testid=experiment-verdict]").inner_text() == verdict
    assert page.locator("[data-testid=chart-experiment-means] rect.bar").count() == 2
    assert page.locator("[data-testid=chart-experiment-lift] line.interval").count() >= 4

    models = page.locator("[data-testid=models-table]").inner_text()
    assert control in models and treatment in models and "production" in models
    assert page.locator("[data-testid=chart-segments] rect.bar").count() == 4
    alerts_text = page.locator("[data-testid=alerts-table]").inner_text()
    assert "<script>window.pwned = 1</script>" in alerts_text  # shown as text, not run
    assert page.evaluate("() => window.pwned") is None

    charts = page.locator("svg.chart")
    assert charts.count() >= 6
    for k in range(charts.count()):
        box = charts.nth(k).bounding_box()
        assert box and box["width"] > 100 and box["height"] > 100, (k, box)
