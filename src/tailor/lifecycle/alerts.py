"""Alerts: logged, kept in the store for the dashboard, and POSTed to a webhook when one is
set (``[lifecycle.alerts] webhook_url`` in ``tailor.toml``).

The webhook body is JSON with a ``text`` line (what Slack and Mattermost incoming webhooks
show) and the structured fields beside it. A webhook that fails is logged and does not stop
the job that raised the alert: the alert is in the store either way.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from tailor.config import AlertSettings
from tailor.lifecycle import journal
from tailor.store.base import Store

log = logging.getLogger(__name__)
WEBHOOK_TIMEOUT_S = 5.0


def raise_alert(
    store: Store,
    settings: AlertSettings,
    source: str,
    message: str,
    *,
    severity: str = "warning",
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    alert = {"source": source, "severity": severity, "message": message, "details": details or {}}
    log.warning("alert from %s: %s", source, message)
    journal.write(store, "alert", alert)
    if settings.webhook_url:
        send_webhook(settings.webhook_url, alert)
    return alert


def send_webhook(url: str, alert: dict[str, Any]) -> bool:
    body = json.dumps(
        {"text": f"tailor {alert['severity']}: {alert['message']}", **alert}, default=str
    ).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as answer:
            ok = 200 <= answer.status < 300
    except (OSError, ValueError) as exc:
        log.warning("alert webhook %s failed: %s", url, exc)
        return False
    if not ok:
        log.warning("alert webhook %s answered %s", url, answer.status)
    return ok


def check_kpis(store: Store, settings: AlertSettings, versions: list[dict]) -> list[dict]:
    """Alerts for the versions whose CTR or coverage fell below the thresholds (once they
    have ``min_impressions`` impressions, so that one quiet minute does not page anyone)."""
    raised = []
    for row in versions:
        if row["impressions"] < settings.min_impressions:
            continue
        for kpi, floor in (("ctr", settings.min_ctr), ("coverage", settings.min_coverage)):
            value = row.get(kpi)
            if floor > 0 and value is not None and value < floor:
                raised.append(
                    raise_alert(
                        store,
                        settings,
                        "kpis",
                        f"{row['engine']} {row['model_version']}: {kpi} {value:.4f} is below "
                        f"the threshold {floor:.4f}",
                        details={"kpi": kpi, "value": value, "threshold": floor, **row},
                    )
                )
    return raised
