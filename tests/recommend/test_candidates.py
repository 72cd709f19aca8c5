"""Precomputed candidates (the serving fast path) give the answers of a full pass."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json

import numpy as np
import pyarrow as pa
import pytest

from tailor.datasets.simulate.shop import ShopConfig, simulate_shop
from tailor.recommend.base import top_k
from tailor.recommend.candidates import (
    EVIDENCE_DEPTH,
    TopCandidates,
    block_top_k,
    compute_top_candidates,
)
from tailor.recommend.catalog import Catalog
from tailor.recommend.rules import Boost, BusinessRules, apply_rules
from tailor.recommend.service import RecommendationService, _first_allowed


@pytest.fixture(scope="module")
def shop() -> tuple[pa.Table, pa.Table]:
    data = simulate_shop(ShopConfig(users=1500, items=400, events=30_000, seed=3))
    return data.events, data.items


@pytest.fixture(scope="module")
def plain(shop) -> RecommendationService:
    events, items = shop
    return RecommendationService.build(events, items, model="als", params={"iterations": 5})


@pytest.fixture(scope="module")
def fast(plain) -> RecommendationService:
    return plain.with_candidates(depth=40)


def same_answer(got, expected) -> None:
    """Equal items in equal order, but where two scores tie (float32 sums of a block and
    of one row may order equal scores differently)."""
    assert len(got) == len(expected)
    got_scores = np.array([line.score for line in got])
    np.testing.assert_allclose(got_scores, [line.score for line in expected], rtol=1e-4)
    for position, (a, b) in enumerate(zip(got, expected, strict=True)):
        if a.item_id != b.item_id:
            ties = np.isclose(got_scores, got_scores[position], rtol=1e-4)
            assert ties.sum() > 1, f"position {position}: {a.item_id} != {b.item_id}"
        else:
            assert a.reason == b.reason


def users_of(service: RecommendationService, n: int = 150) -> list[str]:
    rng = np.random.default_rng(0)
    return rng.choice(service.user_ids, size=min(n, len(service.user_ids)), replace=False).tolist()


def count_full_passes(monkeypatch, service_type=RecommendationService) -> list[int]:
    calls = [0]
    original = service_type._full_pass

    def counting(self, *args, **kwargs):
        calls[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(service_type, "_full_pass", counting)
    return calls


def test_candidates_answer_as_a_full_pass_does_and_spare_it(plain, fast, monkeypatch):
    users = users_of(fast)
    expected = {user: plain.recommend(user, k=10) for user in users}
    calls = count_full_passes(monkeypatch)
    for user in users:
        same_answer(fast.recommend(user, k=10), expected[user])
    # Most known users are answered from their candidates alone.
    assert calls[0] < len(users) * 0.2, calls[0]


def test_filters_and_short_candidate_lists_fall_back_to_the_exact_answer(plain, fast):
    categories = sorted({str(c).split(" > ")[0] for c in plain.catalog.category if c})
    narrow = categories[-1]
    for user in users_of(fast, 60):
        same_answer(
            fast.recommend(user, k=10, include_categories=[narrow]),
            plain.recommend(user, k=10, include_categories=[narrow]),
        )
        same_answer(fast.recommend(user, k=60), plain.recommend(user, k=60))


def test_session_events_take_the_full_pass(plain, fast, monkeypatch):
    user = users_of(fast, 1)[0]
    item = str(fast.catalog.item_ids[0])
    calls = count_full_passes(monkeypatch)
    answer = fast.recommend(user, k=10, session_events=[(item, "view")])
    assert calls[0] == 1
    same_answer(answer, plain.recommend(user, k=10, session_events=[(item, "view")]))


def test_catalog_changes_reach_answers_from_candidates(plain, fast):
    users = users_of(fast, 40)
    gone = {line.item_id for user in users for line in fast.recommend(user, k=3)}
    flags = pa.table({"item_id": sorted(gone), "available": [False] * len(gone)})
    new = pa.table(
        {
            "item_id": ["brand-new-1", "brand-new-2"],
            "title": [str(fast.catalog.title[0]), str(fast.catalog.title[1])],
            "category": [str(fast.catalog.category[0]), str(fast.catalog.category[1])],
        }
    )
    changed_fast = fast.with_items(flags).with_items(new)
    changed_plain = plain.with_items(flags).with_items(new)
    assert changed_fast.candidates is fast.candidates
    for user in users:
        answer = changed_fast.recommend(user, k=10)
        assert not gone & {line.item_id for line in answer}
        same_answer(answer, changed_plain.recommend(user, k=10))


@pytest.mark.parametrize("seed", range(20))
def test_first_allowed_candidates_are_what_the_rules_choose(seed):
    """The serving shortcut over best-first candidates against the generic rules: ties (kept
    in candidate order by the rules' stable sort), unavailable and delisted items, purchases
    and unscored items."""
    rng = np.random.default_rng(seed)
    n_items, depth, k = 60, int(rng.integers(5, 40)), int(rng.integers(1, 15))
    catalog = Catalog.from_table(
        pa.table(
            {
                "item_id": [f"i{n:02d}" for n in range(n_items)],
                "available": (rng.random(n_items) > 0.3).tolist(),
                "active": (rng.random(n_items) > 0.1).tolist(),
            }
        )
    )
    codes = rng.choice(n_items, size=depth, replace=False).astype(np.int64)
    scores = -np.sort(-rng.integers(0, 6, size=depth).astype(np.float32))  # many ties
    scores[rng.random(depth) < 0.1] = -np.inf
    scores = -np.sort(-scores)
    bought = rng.random(depth) < 0.2
    for removed in (bought, None):
        ids, values = apply_rules(
            scores[None, :],
            catalog=catalog.take(codes),
            rules=BusinessRules(exclude_purchased=removed is not None),
            k=k,
            purchased=bought[None, :],
        )
        expected = ids[0][ids[0] >= 0]
        chosen = _first_allowed(codes, scores, catalog.eligible, removed, k)
        np.testing.assert_array_equal(chosen, expected)
        np.testing.assert_array_equal(scores[chosen], values[0][: len(expected)])


def test_rules_that_only_remove_items_answer_as_a_full_pass(plain, fast):
    """The shortcut's cases: purchases kept or removed, delisted items, no items added."""
    users = users_of(fast, 40)
    gone = sorted({line.item_id for user in users for line in plain.recommend(user, k=2)})
    flags = pa.table({"item_id": gone, "available": [False] * len(gone)})
    for rules in (BusinessRules(), BusinessRules(exclude_purchased=False)):
        with_rules = dataclasses.replace(fast, rules=rules).with_items(flags)
        without = dataclasses.replace(plain, rules=rules).with_items(flags)
        assert len(with_rules.catalog) == len(fast.catalog)  # nothing added: the shortcut
        for user in users:
            answer = with_rules.recommend(user, k=10)
            assert not set(gone) & {line.item_id for line in answer}
            same_answer(answer, without.recommend(user, k=10))


def test_boosts_and_diversity_still_answer_exactly(plain, fast):
    mmr = BusinessRules(diversity="mmr", mmr_lambda=0.5)
    category = str(plain.catalog.category[0]).split(" > ")[0]
    boosted = BusinessRules(boosts=(Boost(factor=3.0, category=category),))
    for rules in (mmr, boosted):
        with_rules = dataclasses.replace(fast, rules=rules)
        without = dataclasses.replace(plain, rules=rules)
        for user in users_of(fast, 30):
            same_answer(with_rules.recommend(user, k=5), without.recommend(user, k=5))


def test_candidates_survive_save_and_load(fast, tmp_path):
    loaded = RecommendationService.load(fast.save(tmp_path / "model"))
    assert loaded.candidates is not None
    np.testing.assert_array_equal(loaded.candidates.items, fast.candidates.items)
    np.testing.assert_array_equal(loaded.candidates.evidence, fast.candidates.evidence)
    np.testing.assert_array_equal(loaded.candidates.evidence_verbs, fast.candidates.evidence_verbs)
    for user in users_of(fast, 20):
        same_answer(loaded.recommend(user, k=10), fast.recommend(user, k=10))
    # Loaded arrays can be erased in place too.
    user = users_of(fast, 1)[0]
    row = loaded.user_row(user)
    loaded.without_user(user)
    assert (loaded.candidates.items[row] == -1).all()


def test_erasure_forgets_the_users_candidates(shop):
    events, items = shop
    service = RecommendationService.build(
        events, items, model="als", params={"iterations": 2}
    ).with_candidates(depth=10)
    user = users_of(service, 1)[0]
    row = service.user_row(user)
    assert (service.candidates.items[row] >= 0).any()
    assert (service.candidates.evidence[row] >= 0).any()
    erased = service.without_user(user)
    assert (service.candidates.items[row] == -1).all()
    assert (service.candidates.evidence[row] == -1).all()
    assert (service.candidates.evidence_verbs[row] == 1).all()  # what "no evidence" has
    assert erased.user_row(user) == -1


def test_evidence_names_a_history_item_of_the_user(fast):
    for user in users_of(fast, 30):
        row = fast.user_row(user)
        codes, _ = fast.candidates.of(row)
        evidence = fast.candidates.evidence[row]
        assert len(evidence) == min(fast.candidates.depth, EVIDENCE_DEPTH)
        seen = fast.history[row].indices
        assert np.isin(evidence[evidence >= 0], seen).all()
        assert (evidence[len(codes) :] == -1).all()


def test_kept_verbs_are_what_each_request_would_look_up(fast):
    verbs = fast.candidates.evidence_verbs
    assert verbs is not None and verbs.dtype == np.int8
    assert verbs.shape == fast.candidates.evidence.shape
    for row in range(len(verbs)):
        expected = fast._verb_codes_of_user(row, fast.candidates.evidence[row].astype(np.int64))
        np.testing.assert_array_equal(verbs[row], expected, err_msg=f"row {row}")
    assert (verbs > 1).any() and (verbs == 1).any()  # purchases and views both named


def test_a_model_saved_without_kept_verbs_answers_the_same(fast, tmp_path, monkeypatch):
    """Models saved before the verbs were kept look them up per request, to the same
    sentences; one whose verbs do not fit its evidence is refused."""
    older = dataclasses.replace(
        fast, candidates=dataclasses.replace(fast.candidates, evidence_verbs=None)
    )
    loaded = RecommendationService.load(older.save(tmp_path / "older"))
    assert loaded.candidates.evidence_verbs is None
    for user in users_of(fast, 40):
        got, expected = loaded.recommend(user, k=10), fast.recommend(user, k=10)
        assert [(g.item_id, g.reason) for g in got] == [(e.item_id, e.reason) for e in expected]
    arrays = fast.candidates.to_arrays()
    arrays["top_evidence_verbs"] = arrays["top_evidence_verbs"][:, :-1]
    with pytest.raises(ValueError, match="inconsistent shapes"):
        TopCandidates.from_arrays(arrays)


def test_compute_top_candidates_orders_and_pads():
    scores = np.array([[0.1, 0.9, -np.inf, 0.5], [-np.inf] * 4], np.float32)

    def pre_rule_scores(rows):
        return scores[rows], np.ones(len(rows), np.float32)

    found = compute_top_candidates(pre_rule_scores, 2, 4, depth=3, block=1)
    np.testing.assert_array_equal(found.items, [[1, 3, 0], [-1, -1, -1]])
    codes, values = found.of(0)
    np.testing.assert_array_equal(codes, [1, 3, 0])
    np.testing.assert_allclose(values, [0.9, 0.5, 0.1])
    assert not len(found.of(1)[0])
    with pytest.raises(ValueError, match="depth and block"):
        compute_top_candidates(pre_rule_scores, 2, 4, depth=0)
    with pytest.raises(ValueError, match="inconsistent"):
        TopCandidates.from_arrays(
            {
                "top_items": np.zeros((2, 3)),
                "top_scores": np.zeros((2, 2)),
                "top_best": np.zeros(2),
                "top_n_items": np.asarray(4),
            }
        )


def test_block_top_k_matches_the_exact_partition():
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(64, 5000)).astype(np.float32)
    scores[3, :4990] = -np.inf  # fewer finite scores than k
    scores[4] = 1.0  # all tied
    scores[5, ::2] = -np.inf
    ids, values = block_top_k(scores, 30)
    ref_ids, ref_values = top_k(scores, 30)
    np.testing.assert_array_equal(values, ref_values)
    np.testing.assert_array_equal(ids[values > -np.inf] >= 0, True)
    np.testing.assert_array_equal(ids[3, 10:], -1)
    rows = [r for r in range(64) if r != 4]
    np.testing.assert_array_equal(ids[rows], ref_ids[rows])


def _rewrite_candidates(path, arrays) -> None:
    """Write ``arrays`` as the saved model's candidates, with a matching checksum."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (path / "candidates.npz").write_bytes(buffer.getvalue())
    header = json.loads((path / "service.json").read_text())
    header["files"]["candidates.npz"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (path / "service.json").write_text(json.dumps(header))


@pytest.mark.parametrize("bad", [np.int8(99), np.int8(-1), 1.5])
def test_kept_verbs_tailor_does_not_know_are_refused_on_load(fast, tmp_path, bad):
    path = fast.save(tmp_path / "model")
    arrays = fast.candidates.to_arrays()
    verbs = arrays["top_evidence_verbs"].astype(np.float64 if isinstance(bad, float) else np.int8)
    verbs[0, 0] = bad
    _rewrite_candidates(path, arrays | {"top_evidence_verbs": verbs})
    with pytest.raises(ValueError, match="verb codes tailor does not know"):
        RecommendationService.load(path)


def test_candidates_of_another_model_are_refused_on_load(fast, tmp_path):
    path = fast.save(tmp_path / "model")
    with np.load(path / "candidates.npz") as data:
        arrays = {name: data[name] for name in data.files}
    arrays = {name: (a[:-1] if a.ndim else a) for name, a in arrays.items()}  # one row short
    _rewrite_candidates(path, arrays)
    with pytest.raises(ValueError, match=r"candidates\.npz does not match"):
        RecommendationService.load(path)
