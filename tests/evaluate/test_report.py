"""The offline evaluation report: a self-contained HTML page and its JSON twin."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tailor.evaluate.report import report_data, write_report

EVIL = "<script>alert(1)</script>"


@dataclass
class FakeTrial:
    params: dict[str, Any]
    ndcg: float
    fit_s: float


@dataclass
class FakeReport:
    trials: list[FakeTrial]
    curve: dict[str, list[float]]
    per_user_ndcg: np.ndarray | None


def metrics(ndcg: float) -> dict[str, Any]:
    # NumPy scalars on purpose: the JSON twin must unwrap them.
    return {
        "ndcg": np.float64(ndcg),
        "map": np.float32(ndcg / 2),
        "precision": 0.1,
        "recall": 0.3,
        "hit_rate": 0.5,
        "mrr": 0.4,
        "coverage": 0.9,
        "novelty": 6.5,
        "fit_s": 0.12,
    }


def curve(scale: float) -> dict[str, list[float]]:
    ks = list(range(1, 21))
    return {
        "k": ks,
        "ndcg": [scale * (1 - 1 / (k + 1)) for k in ks],
        "precision": [scale / k for k in ks],
        "recall": [min(1.0, scale * k / 10) for k in ks],
    }


@pytest.fixture
def evaluation() -> tuple[dict[str, Any], dict[str, Any]]:
    figures = {
        "protocol": "temporal",
        "k": 10,
        "data": {"users": 60, "items": 40, "interactions": 660, "train": 500, "test": 160},
        "models": {"popularity": metrics(0.15), "ease": metrics(0.68), EVIL: metrics(0.4)},
        "best": "ease",
        "tuned": {"popularity": {"by": "users"}, "ease": {"l2": 200.0}, EVIL: {"x": EVIL}},
        "validation_ndcg": {"popularity": 0.12, "ease": np.float64(0.45), EVIL: None},
    }
    rng = np.random.default_rng(0)
    reports = {
        # Objects with attributes, as tailor.recommend.evaluation.ModelReport ...
        "popularity": FakeReport(
            [FakeTrial({"by": "users"}, 0.12, 0.01)], curve(0.2), rng.uniform(size=50)
        ),
        "ease": FakeReport(
            [FakeTrial({"l2": 50.0}, 0.40, 0.02), FakeTrial({"l2": 200.0}, np.float64(0.45), 0.02)],
            curve(0.7),
            np.r_[np.zeros(5), rng.uniform(size=45)],
        ),
        # ... or plain mappings.
        EVIL: {
            "trials": [{"params": {"name": EVIL}, "ndcg": 0.3, "fit_s": 0.1}],
            "curve": curve(0.5),
            "per_user_ndcg": None,
        },
    }
    return figures, reports


def test_html_shows_every_model_and_chart(
    tmp_path: Path, evaluation: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    figures, reports = evaluation
    html_path, json_path = write_report(figures, reports, tmp_path / "out" / "report.html")
    assert json_path == tmp_path / "out" / "report.json"
    page = html_path.read_text(encoding="utf-8")
    for name in ("popularity", "ease"):
        assert f"<td>{name}</td>" in page
    assert '<tr class="best"><td>ease</td>' in page
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    # 1 bar chart, 2 curves (nDCG, recall), 2 histograms (one model has no per-user
    # figures) and 3 tuning charts; each is well-formed XML.
    assert len(svgs) == 1 + 2 + 2 + 3
    for svg in svgs:
        ET.fromstring(svg)
    assert "nDCG@10 and MAP@10" in page and "recall@k by cut-off k" in page
    assert "Tuning used the validation split only" in page
    assert "How to read this report" in page
    # Self-contained: nothing fetched from the network.
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<link" not in page


def test_html_escapes_model_names_and_parameters(
    tmp_path: Path, evaluation: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    figures, reports = evaluation
    html_path, _ = write_report(figures, reports, tmp_path / "report.html")
    page = html_path.read_text(encoding="utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_json_twin_holds_the_figures_in_plain_types(
    tmp_path: Path, evaluation: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    figures, reports = evaluation
    _, json_path = write_report(figures, reports, tmp_path / "r.html", tmp_path / "twin.json")
    data = json.loads(json_path.read_text(encoding="utf-8"))
    for key in ("protocol", "k", "data", "best", "tuned"):
        assert data[key] == figures[key]
    assert data["models"]["ease"]["ndcg"] == pytest.approx(0.68)
    assert data["validation_ndcg"]["ease"] == pytest.approx(0.45)
    assert data["curves"]["ease"] == curve(0.7)
    assert data["trials"]["ease"][1] == {"params": {"l2": 200.0}, "ndcg": 0.45, "fit_s": 0.02}
    assert data["trials"][EVIL][0]["params"] == {"name": EVIL}
    ease = data["per_user_ndcg"]["ease"]
    assert ease["users"] == 50 and sum(ease["histogram"]["counts"]) == 50
    assert ease["zero_share"] == pytest.approx(0.1)
    assert EVIL not in data["per_user_ndcg"]


def test_json_twin_matches_what_report_data_returns(
    tmp_path: Path, evaluation: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    figures, reports = evaluation
    _, json_path = write_report(figures, reports, tmp_path / "r.html")
    written = json.loads(json_path.read_text(encoding="utf-8"))
    expected = report_data(figures, reports)
    written.pop("generated"), expected.pop("generated")
    assert written == expected


def test_non_finite_figures_become_null(tmp_path: Path) -> None:
    figures = {"protocol": "random", "k": 5, "models": {"m": {"ndcg": float("nan")}}, "best": "m"}
    _, json_path = write_report(figures, {}, tmp_path / "r.html")
    assert json.loads(json_path.read_text())["models"]["m"]["ndcg"] is None


def test_bad_input_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="figures\\['models'\\]"):
        write_report({"protocol": "random", "k": 5, "models": {}}, {}, tmp_path / "r.html")
    figures = {"protocol": "random", "k": 5, "models": {"m": {"ndcg": 0.1}}, "best": "m"}
    with pytest.raises(ValueError, match="both be"):
        write_report(figures, {}, tmp_path / "r.json")
    with pytest.raises(TypeError, match=r"cannot write .*object.* to the JSON report"):
        write_report(figures | {"tuned": {"m": {"x": object()}}}, {}, tmp_path / "r.html")


X_LABEL = r'text-anchor="middle" font-size="11" fill="#555">(\d+)</text>'


def test_a_long_line_chart_labels_round_steps_that_do_not_overlap() -> None:
    from tailor.evaluate.report import line_chart

    x = list(range(179))
    svg = line_chart({"a": (x, [1.0] * 179)}, {"a": "#000"}, title="t", x_label="week")
    labels = [int(v) for v in re.findall(X_LABEL, svg)]
    # multiples of 20 plus the last point: every 5 would put 37 labels on 179 points
    assert [v for v in labels if v % 20 == 0][:3] == [0, 20, 40]
    assert 178 in labels and len(set(labels) - {178}) <= 10
    short = line_chart({"a": ([1, 2, 5, 10], [1, 2, 3, 4])}, {"a": "#000"}, title="t", x_label="k")
    assert sorted(int(v) for v in re.findall(X_LABEL, short)) == [1, 5, 10]
