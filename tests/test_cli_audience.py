"""``tailor audience fit`` and ``score`` end to end on imported purchases."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path

import pyarrow.csv as pacsv

from tests._cli import tailor
from tests.audience.test_churn import simulated_purchases

HEADER = [
    "event_id", "event_type", "subject_id", "occurred_at", "item_id", "quantity", "price",
    "currency", "purpose", "granted",
]  # fmt: skip


def write_log(path: Path, customers: int = 300, consenting: int | None = None) -> Path:
    """Simulated purchases, and an analytics consent (opt-in by default) per customer."""
    table = simulated_purchases(customers).to_pylist()
    consenting = customers if consenting is None else consenting
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for k in range(consenting):
            writer.writerow([f"ok{k}", "consent", f"c{k}", "2023-12-01T00:00:00Z", "", "", "",
                             "", "analytics", "true"])  # fmt: skip
        for n, row in enumerate(table):
            when = (row["occurred_at"] + timedelta(microseconds=0)).isoformat()
            writer.writerow([f"p{n}", "purchase", row["subject_id"], when, row["item_id"],
                             row["quantity"], round(row["price"], 2), "EUR", "", ""])  # fmt: skip
    return path


def said(result) -> str:
    return " ".join(result.output.split())


def test_fit_then_score_writes_one_row_per_consenting_customer(workdir: Path) -> None:
    assert tailor("init").exit_code == 0
    log = write_log(workdir / "purchases.csv", customers=300, consenting=250)
    imported = tailor("import", "events", str(log), "--no-progress")
    assert imported.exit_code == 0, imported.output

    fitted = tailor("audience", "fit", "--model", "m", "--horizon", "60")
    assert fitted.exit_code == 0, fitted.output
    assert "BG/NBD" in fitted.output and "cluster 0" in fitted.output
    described = json.loads((workdir / "m" / "audience.json").read_text())
    buyers = {f"c{k}" for k in range(250)} & set(simulated_purchases(300)["subject_id"].to_pylist())
    assert described["churn_model"] and described["customers"] == len(buyers)

    scored = tailor("audience", "score", "--model", "m", "--out", "scores.csv")
    assert scored.exit_code == 0, scored.output
    assert f"stored the scores of {len(buyers):,} customers" in scored.output
    from tailor.config import get_settings
    from tailor.store import open_store

    get_settings.cache_clear()
    store = open_store(str(get_settings().store))
    try:
        stored = store.read_scores("audience")
    finally:
        store.close()
    assert len(stored) == len(buyers) and "churn_risk" in json.loads(stored[0][1])
    scores = pacsv.read_csv(workdir / "scores.csv")
    # Customers without analytics consent are not scored; ids stay pseudonyms.
    assert scores.num_rows == len(buyers)
    assert not any(c.startswith("c") and c[1:].isdigit() for c in scores["customer_id"].to_pylist())
    risk = scores["churn_risk"].to_pylist()
    assert all(0 <= r <= 1 for r in risk)
    assert all(v >= 0 for v in scores["clv"].to_pylist())
    reasons = json.loads(scores["churn_reasons"][0].as_py())
    assert reasons and {"feature", "contribution"} <= set(reasons[0])

    reported = tailor("audience", "report", "--model", "m", "--out", "r/customers.html")
    assert reported.exit_code == 0, reported.output
    page = (workdir / "r" / "customers.html").read_text()
    assert page.count("<svg") >= 5 and "Back-test" in page
    twin = json.loads((workdir / "r" / "customers.json").read_text())
    assert twin["customers"] == len(buyers)
    assert sum(s["customers"] for s in twin["segments"]) == len(buyers)
    assert 0.5 < twin["backtest"]["auc"]["churn model"] <= 1


def test_audience_commands_explain_bad_input(workdir: Path) -> None:
    assert tailor("init").exit_code == 0
    empty = tailor("audience", "fit", "--model", "m")
    assert empty.exit_code != 0 and "no purchases" in said(empty)
    log = write_log(workdir / "purchases.csv", customers=60)
    assert tailor("import", "events", str(log), "--no-progress").exit_code == 0
    bad_day = tailor("audience", "fit", "--model", "m", "--as-of", "31/12/2024")
    assert bad_day.exit_code != 0 and "YYYY-MM-DD" in said(bad_day)
    missing = tailor("audience", "score", "--model", "nowhere", "--out", "s.csv")
    assert missing.exit_code == 1 and "holds no audience model" in said(missing)
    wrong_suffix = tailor("audience", "score", "--model", "m", "--out", "s.txt")
    assert wrong_suffix.exit_code != 0 and ".parquet or .csv" in said(wrong_suffix)
    not_html = tailor("audience", "report", "--model", "m", "--out", "r.pdf")
    assert not_html.exit_code != 0 and "write an .html page" in said(not_html)
    damaged = workdir / "damaged"
    damaged.mkdir()
    (damaged / "audience.json").write_text('{"format": "tailor.audience/1"}')
    broken = tailor("audience", "score", "--model", "damaged")
    assert broken.exit_code == 1 and "damaged or incompatible audience model" in said(broken)
    assert tailor("audience", "fit", "--model", "m").exit_code == 0
    (workdir / "a-file").write_text("")
    blocked = tailor("audience", "report", "--model", "m", "--out", "a-file/r.html")
    assert blocked.exit_code == 1 and "cannot write a-file/r.html" in said(blocked)
    into_file = tailor("audience", "fit", "--model", "a-file")
    assert into_file.exit_code == 1 and "cannot write the model to a-file" in said(into_file)
    early = tailor("audience", "fit", "--model", "m", "--as-of", "2023-01-01")
    assert early.exit_code == 1 and "customer" in said(early)


def test_fitted_models_are_registered_and_aliases_move_from_the_cli(workdir: Path) -> None:
    assert tailor("init").exit_code == 0
    log = write_log(workdir / "purchases.csv", customers=200)
    assert tailor("import", "events", str(log), "--no-progress").exit_code == 0
    first = tailor("audience", "fit", "--model", "m1", "--horizon", "60")
    second = tailor("audience", "fit", "--model", "m2", "--horizon", "30")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    v1, v2 = (said(r).split("registered as ")[1].split()[0] for r in (first, second))

    listed = tailor("models", "list", "audience")
    assert listed.exit_code == 0 and "2 model version(s)" in said(listed)
    shown = json.loads(tailor("models", "show", "audience", v1).output)
    assert shown["config"]["horizon_days"] == 60 and shown["files_unchanged"] is True
    assert shown["data_window"]["customers"] > 0

    for version, reason in ((v1, "first fit"), (v2, "shorter horizon")):
        moved = tailor("models", "promote", "audience", version, "--reason", reason, "--by", "ann")
        assert moved.exit_code == 0, moved.output
    rolled = tailor("models", "rollback", "audience", "--reason", "worse churn AUC", "--by", "bob")
    assert rolled.exit_code == 0 and f"audience production → {v1}" in said(rolled)
    assert "3 move(s)" in said(tailor("models", "history", "audience"))
    from tailor.config import get_settings
    from tailor.lifecycle import registry
    from tailor.store import open_store

    get_settings.cache_clear()
    store = open_store(get_settings().store)
    try:
        moves = registry.history(store, "audience", "production")
    finally:
        store.close()
    assert [(m.version, m.moved_by) for m in moves] == [(v1, "ann"), (v2, "ann"), (v1, "bob")]
    assert moves[-1].reason == "rollback: worse churn AUC"

    missing = tailor("models", "promote", "audience", "nope", "--reason", "x")
    assert missing.exit_code == 1 and "has no version 'nope'" in said(missing)
    assert tailor("models", "list", "marketing").exit_code == 1
