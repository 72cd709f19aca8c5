"""``tailor evaluate recommend`` end to end on small synthetic interactions."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tailor.cli_evaluate import save_chosen
from tailor.recommend import InteractionLog, load_model
from tests._cli import tailor

START = datetime(2024, 3, 1, tzinfo=UTC)


def said(result) -> str:
    """The output with Rich's line wrapping undone."""
    return " ".join(result.output.split())


def planted(users: int = 60, items: int = 40, seed: int = 0) -> list[tuple[str, str, datetime]]:
    """Four taste groups of users, each liking its own quarter of the items, plus noise;
    times spread over 30 days so every protocol has a past and a future."""
    rng = np.random.default_rng(seed)
    block = items // 4
    rows = []
    for user in range(users):
        group = user % 4
        liked = rng.choice(np.arange(group * block, (group + 1) * block), size=8, replace=False)
        for item in np.r_[liked, rng.choice(items, size=3, replace=False)]:
            when = START + timedelta(minutes=int(rng.integers(0, 30 * 24 * 60)))
            rows.append((f"u{user}", f"i{item}", when))
    return rows


def write_interactions(path: Path, rows: list[tuple[str, str, datetime]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "ts"])
        writer.writerows((u, i, f"{t:%Y-%m-%dT%H:%M:%S}") for u, i, t in rows)
    return path


FILE_OPTIONS = ("--user-col", "user", "--item-col", "item", "--time-col", "ts")


def test_help_explains_the_command() -> None:
    result = tailor("evaluate", "recommend", "--help")
    assert result.exit_code == 0, result.output
    text = said(result)
    for phrase in ("validation", "scored once on the test rows", "--save-model", "Example:"):
        assert phrase in text
    assert "recommend" in said(tailor("evaluate", "--help"))


def test_evaluate_a_file_write_the_report_and_save_the_best_model(workdir: Path) -> None:
    data = write_interactions(workdir / "interactions.csv", planted())
    result = tailor(
        "evaluate", "recommend", "--interactions", str(data), *FILE_OPTIONS,
        "--budget", "2", "--models", "popularity,ease,itemknn",
        "--save-model", "models/best.npz",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = said(result)
    assert "tuning ease on validation" in text  # progress
    assert "nDCG" in text and "popularity" in text  # the final table

    figures = json.loads((workdir / "reports" / "recommend.json").read_text())
    assert figures["protocol"] == "temporal" and figures["k"] == 10
    assert set(figures["models"]) == {"popularity", "ease", "itemknn", "hybrid", "blend"}
    best = figures["best"]
    assert best == max(figures["models"], key=lambda m: figures["models"][m]["ndcg"])
    # The planted tastes are learnable: a personalized model beats popularity.
    assert figures["models"][best]["ndcg"] > figures["models"]["popularity"]["ndcg"] + 0.1
    assert len(figures["trials"]["ease"]) == 2 and len(figures["curves"]["ease"]["k"]) == 20
    assert figures["data"]["interactions"] == 660

    page = (workdir / "reports" / "recommend.html").read_text(encoding="utf-8")
    assert page.count("<svg") >= 6
    for name in figures["models"]:
        assert f"<td>{name}</td>" in page

    # The saved model is the one validation chose, whatever the test figures say.
    chosen = figures["chosen"]
    validation = figures["validation_ndcg"]
    assert validation[chosen] == max(validation.values())
    assert f"Chosen for serving: <strong>{chosen}</strong>" in page
    model = load_model(workdir / "models" / "best.npz")
    assert model.name == chosen
    tuning = model.tuning_
    assert tuning["protocol"] == "temporal" and tuning["k"] == 10
    assert tuning["settings_tried"] == len(figures["trials"][chosen])
    assert tuning["test_metrics"]["ndcg"] == figures["models"][chosen]["ndcg"]
    assert tuning["validation_ndcg"] == pytest.approx(validation[chosen], abs=1e-4)
    assert tuning["data_window"]["rows"] == 660
    assert tuning["data_window"]["first_event"].startswith("2024-03-0")
    # Trained on all interactions: every item of the file is known to it.
    assert model.n_items_ == 40


def test_evaluate_the_store_events(workdir: Path) -> None:
    assert tailor("init").exit_code == 0
    rows = planted(users=24)
    header = ["event_id", "event_type", "subject_id", "occurred_at", "item_id"]
    views = workdir / "views.csv"
    with views.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for n, (user, item, when) in enumerate(rows):
            writer.writerow([f"e{n}", "view", user, f"{when:%Y-%m-%dT%H:%M:%SZ}", item])
    assert tailor("import", "events", str(views), "--no-progress").exit_code == 0
    # Nobody granted personalization consent, and the default for it is opt-in.
    refused = tailor("evaluate", "recommend", "--quiet")
    assert refused.exit_code == 1
    assert "personalization consent" in said(refused) and "Traceback" not in refused.output

    grants = workdir / "consent.csv"
    with grants.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["event_id", "event_type", "subject_id", "occurred_at", "purpose", "granted"]
        )
        for user in sorted({user for user, _, _ in rows})[:20]:
            writer.writerow(
                [f"c{user}", "consent", user, "2024-02-01T00:00:00Z", "personalization", "true"]
            )
    assert tailor("import", "events", str(grants), "--no-progress").exit_code == 0
    result = tailor(
        "evaluate", "recommend", "--models", "popularity,ease", "--budget", "1", "--no-hybrid",
        "--report", "out/store.html", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads((workdir / "out" / "store.json").read_text())
    # Only the 20 subjects who granted consent (11 views each) fed the evaluation.
    assert figures["data"]["users"] == 20 and figures["data"]["interactions"] == 220
    assert set(figures["models"]) == {"popularity", "ease"}
    assert figures["data_window"]["source"].startswith("store ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interactions", "missing.csv"], "missing.csv: no such file"),
        (["--interactions", "data.csv", "--user-col", "nobody"], "--user-col 'nobody' is not"),
        (["--interactions", "data.csv", "--models", "ease,magic"], "unknown model(s) magic"),
        (["--interactions", "data.csv", "--models", " , "], "--models: no model named"),
        (["--user-col", "user"], "--user-col: name columns of --interactions FILE"),
        (["--interactions", "data.csv", "--report", "."], "--report: . is a folder"),
        (["--interactions", "data.csv", "--save-model", "data.csv/m.npz"], "--save-model: cannot"),
        (["--interactions", "data.csv", "--report", "r.json"], "--report: give the HTML file"),
        (["--interactions", "once.csv", "--protocol", "leave-last-out"], "leaves no test"),
    ],
)
def test_bad_input_says_what_is_wrong(workdir: Path, args: list[str], message: str) -> None:
    write_interactions(workdir / "data.csv", planted(users=8))
    # One interaction per user: leave-last-out keeps it in training, so no test remains.
    write_interactions(workdir / "once.csv", [(f"u{n}", f"i{n}", START) for n in range(10)])
    options = list(FILE_OPTIONS) if "--interactions" in args and "--user-col" not in args else []
    result = tailor("evaluate", "recommend", "--quiet", *args, *options)
    assert result.exit_code == 1, result.output
    assert message in said(result)
    assert "Traceback" not in result.output
    assert not (workdir / "reports").exists()


def test_an_unknown_protocol_is_a_usage_error(workdir: Path) -> None:
    result = tailor("evaluate", "recommend", "--protocol", "tomorrow")
    assert result.exit_code == 2
    assert "tomorrow" in said(result) and "leave-last-out" in said(result)


def save_as_best(
    name: str, params: dict, protocol: str, path: Path, evaluated: Any = None
) -> tuple[Any, Any]:
    """(the model :func:`save_chosen` saved, the log it was refitted on) for an evaluation whose
    best is ``name`` with ``params`` (validation nDCG 0.4); ``evaluated`` stands for the model
    the evaluation fitted."""
    users, items, times = zip(*planted(users=24), strict=True)
    log = InteractionLog.from_arrays(
        np.array(users), np.array(items), times=np.array([t.timestamp() * 1000 for t in times])
    )
    report = SimpleNamespace(params=params, metrics={"ndcg": 0.5}, validation_ndcg=0.4, trials=[])
    evaluation = SimpleNamespace(
        chosen=name,
        reports={name: report},
        protocol=protocol,
        k=10,
        splits=SimpleNamespace(summary=lambda: {"train": 1}),
        fitted={} if evaluated is None else {name: evaluated},
    )
    return load_model(save_chosen(evaluation, log, path)), log  # type: ignore[arg-type]


def test_a_saved_hybrid_keeps_its_tuning_record(tmp_path: Path) -> None:
    params = {
        "generators": {"ease": {"l2": 100.0}, "itemknn": {"neighbors": 20}},
        "candidates": 20,
        "trees": 20,
    }
    for evaluated_with_times in (True, False):
        evaluated = SimpleNamespace(uses_times_=evaluated_with_times)
        path = tmp_path / f"hybrid-{evaluated_with_times}.npz"
        model, _ = save_as_best("hybrid", params, "temporal", path, evaluated)
        assert model.name == "hybrid"
        assert model.tuning_["protocol"] == "temporal"
        # Refitted with the features the evaluated hybrid had.
        assert model.uses_times_ is evaluated_with_times


def test_no_blend_and_no_hybrid_leave_the_single_models(workdir: Path) -> None:
    data = write_interactions(workdir / "interactions.csv", planted())
    result = tailor(
        "evaluate", "recommend", "--interactions", str(data), *FILE_OPTIONS,
        "--budget", "1", "--models", "ease,itemknn", "--no-hybrid", "--no-blend", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads((workdir / "reports" / "recommend.json").read_text())
    assert set(figures["models"]) == {"ease", "itemknn"}


def test_a_saved_blend_is_refitted_on_everything_with_its_weights(tmp_path: Path) -> None:
    params = {
        "generators": {"itemknn": {"neighbors": 20}, "ease": {"l2": 100.0}},
        "weights": {"ease": 0.5},
    }
    model, log = save_as_best("blend", params, "random", tmp_path / "blend.npz")
    assert model.name == "blend" and model.get_params() == params
    assert list(model.models_) == ["itemknn", "ease"]
    assert model.models_["ease"].n_items_ == log.n_items  # fitted on every interaction
    assert model.tuning_["validation_ndcg"] == 0.4
