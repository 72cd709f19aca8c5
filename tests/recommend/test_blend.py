"""The blend adds its generators' per-user standardized scores with weights tuned on
validation, saves in one file, serves and forgets erased users inside its generators."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tailor.recommend import load_model
from tailor.recommend.blend import BLEND_WEIGHTS, Blend, _unit_spread
from tailor.recommend.evaluation import tune_blend
from tailor.recommend.models import EASE, ItemKNN
from tailor.recommend.service import RecommendationService

from .test_models import hold_back, two_tastes
from .test_service import shop

GENERATORS = {"ease": {"l2": 10.0}, "itemknn": {"neighbors": 20, "shrink": 1.0}}


def unit_spread(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    return scores / scores.std(axis=1, keepdims=True)


def test_the_blend_is_the_weighted_sum_of_scores_scaled_per_user():
    x = two_tastes(seed=3)
    blend = Blend(generators=GENERATORS, weights={"itemknn": 0.5}).fit(x)
    ease = EASE(l2=10.0).fit(x).score(x)
    knn = ItemKNN(neighbors=20, shrink=1.0).fit(x).score(x)
    expected = unit_spread(ease) + 0.5 * unit_spread(knn)
    np.testing.assert_allclose(blend.score(x), expected, rtol=1e-4, atol=1e-4)
    ids, _ = blend.recommend(x, k=5, users=np.arange(60))
    assert ((ids[:30] < 20).mean() + (ids[30:] >= 20).mean()) / 2 > 0.9
    for user in range(60):
        assert not set(ids[user]) & set(x[user].indices)


def test_a_zero_weight_leaves_the_anchor_alone():
    x = two_tastes(seed=4)
    alone = EASE(l2=10.0).fit(x).recommend(x, k=5)[0]
    blended = Blend(generators=GENERATORS, weights={"itemknn": 0.0}).fit(x).recommend(x, k=5)[0]
    np.testing.assert_array_equal(blended, alone)


def test_scaled_rows_keep_their_zero_and_excluded_items_out():
    rows = np.array([[1.0, 2.0, 3.0, -np.inf], [5.0, 5.0, 5.0, 5.0], [np.nan, 0.0, 2.0, 4.0]])
    out = _unit_spread(rows)
    sd = np.sqrt(2 / 3)  # of 1, 2, 3 (and of 0, 2, 4 halved)
    np.testing.assert_allclose(out[0, :3], np.array([1.0, 2.0, 3.0]) / sd, rtol=1e-6)
    assert out[0, 3] == -np.inf and out[2, 0] == -np.inf
    np.testing.assert_array_equal(out[1], rows[1])  # no spread: nothing to scale by
    np.testing.assert_allclose(out[2, 1:], np.array([0.0, 1.0, 2.0]) / sd, rtol=1e-6)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "generators must name at least one model"),
        ({"generators": {"nonsense": {}}}, "unknown model"),
        ({"generators": {"blend": {}}}, "unknown model"),
        ({"generators": {"hybrid": {}}}, "not a blend or a hybrid"),
        ({"generators": GENERATORS, "weights": {"itemknn": True}}, "a number from 0"),
        ({"generators": GENERATORS, "weights": {"als": 1.0}}, "'als' is not one of"),
        ({"generators": GENERATORS, "weights": {"itemknn": -1.0}}, "a number from 0 to 1000"),
        ({"generators": GENERATORS, "weights": {"itemknn": float("nan")}}, "a number from 0"),
        ({"generators": GENERATORS, "weights": {"itemknn": 1e300}}, "a number from 0 to 1000"),
        ({"generators": GENERATORS, "weights": {"itemknn": "1"}}, "a number from 0"),
        ({"generators": "ease"}, "generators must name at least one model"),
        ({"generators": {"ease": 500}}, "ease: its settings must be an object"),
        ({"generators": {"ease": {"lambda": 5}}}, r"unknown setting\(s\) lambda; it takes l2"),
        ({"generators": GENERATORS, "weights": [0.5]}, "weights must be an object"),
    ],
)
def test_bad_settings_are_refused_before_any_fitting(settings, message):
    with pytest.raises(ValueError, match=message):
        Blend(**settings).fit(two_tastes())


def test_the_blend_saves_its_generators_in_order_in_one_file(tmp_path):
    x = two_tastes(seed=5)
    order = {"itemknn": GENERATORS["itemknn"], "ease": GENERATORS["ease"]}
    model = Blend(generators=order, weights={"ease": 0.25}).fit(x)
    model.tuning_ = {"protocol": "random"}
    loaded = load_model(model.save(tmp_path / "blend.npz"))
    assert isinstance(loaded, Blend) and list(loaded.models_) == ["itemknn", "ease"]
    assert loaded.weights == {"ease": 0.25} and loaded.tuning_ == {"protocol": "random"}
    np.testing.assert_array_equal(loaded.score(x), model.score(x))
    # The anchor (first generator) relates items: its links explain blended items.
    sources, targets = np.array([1, 2]), np.array([3, 4, 5])
    np.testing.assert_array_equal(
        loaded.item_similarity(sources, targets),
        loaded.models_["itemknn"].item_similarity(sources, targets),
    )


def test_tune_blend_tries_each_weight_on_validation_and_keeps_the_best():
    fit_part, validation = hold_back(two_tastes(seed=6))
    result = tune_blend(GENERATORS, fit_part, validation, k=5)
    assert [t.params for t in result.trials] == [{"itemknn": w} for w in BLEND_WEIGHTS]
    best = max(result.trials, key=lambda t: t.ndcg)
    assert result.best_ndcg == best.ndcg
    assert result.best_params == {"generators": GENERATORS, "weights": best.params}
    # The trials' figures are the blend's own on validation, not a constant.
    refit = Blend(**result.best_params).fit(fit_part)
    from tailor.evaluate import ranking_metrics

    top = refit.recommend(fit_part, k=5)[0]
    assert ranking_metrics(top, validation, k=5).ndcg == pytest.approx(best.ndcg)


def test_a_blend_explains_by_its_anchors_links_alike_from_candidates_and_afresh():
    events, items = shop()
    generators = {"ease": {"l2": 10.0}, "als": {"factors": 4, "iterations": 3}}
    service = RecommendationService.build(
        events, items, model="blend", params={"generators": generators, "weights": {"als": 0.5}}
    )
    with_candidates = service.with_candidates()
    # The blend's evidence is one item per candidate, so the candidates keep it.
    assert with_candidates.candidates.evidence is not None
    for user in ("t3", "c1", "t7"):
        afresh = service.recommend(user, k=6)
        kept = with_candidates.recommend(user, k=6)
        assert afresh and len(afresh) == len(kept)
        # The candidates keep float32 scores: all but the score's last digits are equal.
        for a, b in zip(afresh, kept, strict=True):
            assert dataclasses.replace(a, score=0.0) == dataclasses.replace(b, score=0.0)
            assert a.score == pytest.approx(b.score, rel=1e-6)
        personal = [line for line in afresh if line.kind == "because_you"]
        assert personal and {line.source for line in personal} == {"blend"}
        # The evidence named is the anchor's (EASE's) strongest link, not another model's.
        anchor = service.model.models_["ease"]
        seen = service.history[service.user_row(user)].indices
        for line in personal:
            code = service.catalog.codes([line.item_id])[0]
            links = anchor.item_similarity(seen, np.array([code]))[:, 0]
            assert line.evidence_item == str(service.catalog.item_ids[seen[np.argmax(links)]])


def test_a_served_blend_explains_and_forgets_an_erased_user_inside_its_generators():
    events, items = shop()
    generators = {"ease": {"l2": 10.0}, "als": {"factors": 4, "iterations": 3}}
    service = RecommendationService.build(
        events, items, model="blend", params={"generators": generators, "weights": {"als": 0.5}}
    )
    answer = service.recommend("t3", k=5)
    assert len(answer) == 5 and all(line.item_id.startswith("tea-") for line in answer)
    assert any(line.reason.startswith("Because you viewed") for line in answer)
    row = service.user_row("t3")
    als = service.model.models_["als"]
    assert np.abs(als.user_factors_[row]).sum() > 0
    forgotten = service.without_user("t3")
    assert forgotten.user_row("t3") == -1
    assert np.abs(forgotten.model.models_["als"].user_factors_[row]).sum() == 0
