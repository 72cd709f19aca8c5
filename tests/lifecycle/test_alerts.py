"""Alerts reach the log, the store and a webhook; a dead webhook loses nothing."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tailor.config import AlertSettings, Settings
from tailor.lifecycle import journal
from tailor.lifecycle.alerts import check_kpis, raise_alert
from tailor.store import open_store


@pytest.fixture
def store(tmp_path):
    store = open_store(str(tmp_path / "alerts.duckdb"))
    yield store
    store.close()


@pytest.fixture
def webhook():
    """A local webhook that keeps what it receives."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):  # quiet
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def test_an_alert_is_logged_stored_and_posted(store, webhook, caplog):
    url, received = webhook
    with caplog.at_level(logging.WARNING):
        raise_alert(
            store, AlertSettings(webhook_url=url), "kpis", "CTR fell", details={"ctr": 0.01}
        )
    (posted,) = received
    assert posted["text"] == "tailor warning: CTR fell"
    assert posted["source"] == "kpis" and posted["details"] == {"ctr": 0.01}
    (kept,) = journal.read(store, "alert")
    assert kept["message"] == "CTR fell" and kept["at"] is not None
    assert "alert from kpis: CTR fell" in caplog.text


def test_a_dead_webhook_is_logged_and_the_alert_kept(store, caplog):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again: nothing listens there
    settings = AlertSettings(webhook_url=f"http://127.0.0.1:{port}/hook")
    with caplog.at_level(logging.WARNING):
        raise_alert(store, settings, "drift", "drift in purchase_value")
    assert "alert webhook" in caplog.text and "failed" in caplog.text
    assert journal.read(store, "alert")[0]["message"] == "drift in purchase_value"


def test_kpi_thresholds_wait_for_enough_impressions(store):
    settings = AlertSettings(min_ctr=0.02, min_coverage=0.1, min_impressions=100)
    rows = [
        {"engine": "recommend", "model_version": "quiet", "impressions": 50, "ctr": 0.0,
         "coverage": 0.0},
        {"engine": "recommend", "model_version": "v1", "impressions": 500, "ctr": 0.01,
         "coverage": 0.5},
        {"engine": "recommend", "model_version": "v2", "impressions": 500, "ctr": 0.05,
         "coverage": 0.05},
    ]  # fmt: skip
    raised = check_kpis(store, settings, rows)
    assert sorted((a["details"]["model_version"], a["details"]["kpi"]) for a in raised) == [
        ("v1", "ctr"),
        ("v2", "coverage"),
    ]


def test_alert_settings_are_validated():
    with pytest.raises(ValueError, match="min_ctr"):
        Settings(lifecycle={"alerts": {"min_ctr": 2}})
    with pytest.raises(ValueError, match="unknown journal kind"):
        journal.read(open_store(":memory:"), "gossip")


def test_lifecycle_settings_name_what_is_wrong():
    with pytest.raises(ValueError, match="no retraining job for budget"):
        Settings(lifecycle={"retrain_every": {"budget": "1d"}})
    with pytest.raises(ValueError, match="not a duration"):
        Settings(lifecycle={"retrain_every": {"recommend": "daily"}})
