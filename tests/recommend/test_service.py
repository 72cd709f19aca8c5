"""The service a request reaches: personal, cold-start by context, new items by content,
business rules and explanations together, on a small shop with planted tastes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from tailor.recommend.rules import BusinessRules
from tailor.recommend.service import RecommendationService, UserLookup, _verbs_of

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def shop(seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """Two tastes: coffee lovers (users c*) view coffee items, tea lovers (t*) tea items.
    German visitors favour coffee-3 lately, French ones tea-2. coffee-new and tea-new have no
    events yet; coffee-gone is unavailable."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, country in (("coffee", "DE"), ("tea", "FR")):
        for u in range(30):
            user = f"{group[0]}{u}"
            for i in rng.choice(8, size=4, replace=False):
                rows.append(
                    (
                        user,
                        f"{group}-{i}",
                        "view",
                        NOW - timedelta(days=int(rng.integers(1, 20))),
                        country,
                    )
                )
            rows.append((user, f"{group}-gone", "view", NOW - timedelta(days=2), country))
    for n in range(20):
        rows.append((f"de{n}", "coffee-3", "view", NOW - timedelta(hours=n), "DE"))
        rows.append((f"fr{n}", "tea-2", "view", NOW - timedelta(hours=n), "FR"))
    rows.append(("c0", "coffee-0", "purchase", NOW - timedelta(days=1), "DE"))
    rows.append(("c0", "beans-0", "purchase", NOW - timedelta(days=1), "DE"))
    users, items, kinds, times, countries = zip(*rows, strict=True)
    events = pa.table(
        {
            "subject_id": list(users),
            "item_id": list(items),
            "event_type": list(kinds),
            "occurred_at": pa.array(times, pa.timestamp("us", tz="UTC")),
            "country": list(countries),
            "quantity": [1 if k == "purchase" else None for k in kinds],
        }
    )
    ids, titles, categories, available = [], [], [], []
    for group, words in (("coffee", "espresso arabica roast coffee"), ("tea", "green leaf tea")):
        for i in [*range(8), "new", "gone"]:
            ids.append(f"{group}-{i}")
            titles.append(f"{words} {i}")
            categories.append(f"Drinks > {group.title()}")
            available.append(i != "gone")
    ids.append("beans-0")
    titles.append("arabica coffee beans refill")
    categories.append("Pantry > Beans")
    available.append(True)
    items = pa.table(
        {"item_id": ids, "title": titles, "category": categories, "available": available}
    )
    return events, items


@pytest.fixture(scope="module")
def service() -> RecommendationService:
    events, items = shop()
    return RecommendationService.build(events, items, model="itemknn", params={"neighbors": 20})


def test_known_user_gets_their_taste_explained_by_their_history(service):
    answer = service.recommend("t3", k=5)
    assert len(answer) == 5
    assert all(line.item_id.startswith("tea-") for line in answer)
    personal = [line for line in answer if line.kind == "because_you"]
    assert personal, [line.reason for line in answer]
    assert all(line.reason.startswith("Because you viewed") for line in personal)
    assert all(line.evidence_item.startswith("tea-") for line in personal)


def test_unavailable_item_never_appears(service):
    for user in ("c1", "t1", "nobody"):
        assert "coffee-gone" not in {line.item_id for line in service.recommend(user, k=20)}
        assert "tea-gone" not in {line.item_id for line in service.recommend(user, k=20)}


def test_new_visitor_gets_trending_in_their_country_then_personal_from_first_event(service):
    german = service.recommend("visitor-1", k=3, context={"country": "DE"})
    french = service.recommend("visitor-1", k=3, context={"country": "FR"})
    assert german[0].item_id == "coffee-3" and french[0].item_id == "tea-2"
    assert german[0].source == "trending"
    assert german[0].reason == "Popular in DE this week"
    after_a_view = service.recommend(
        "visitor-1", k=5, context={"country": "DE"}, session_events=[("tea-5", "view")]
    )
    assert after_a_view[0].kind != "popular_in"
    assert sum(line.item_id.startswith("tea-") for line in after_a_view) >= 4
    assert "tea-5" not in {line.item_id for line in after_a_view}


def test_an_item_clicked_then_bought_in_the_session_is_explained_by_the_purchase(service):
    # Regression: the kinds' ranks of one item were summed (click 2 + purchase 4) past the
    # last kind, and the request failed with an IndexError.
    session = [("tea-5", "view"), ("tea-5", "click"), ("tea-5", "purchase"), ("tea-5", "view")]
    answer = service.recommend("visitor-2", k=5, session_events=session)
    assert answer and "tea-5" not in {line.item_id for line in answer}
    assert any("bought" in line.reason for line in answer if line.evidence_item == "tea-5")


def test_new_item_is_recommended_through_content_before_any_interaction(service):
    assert service.model.item_popularity_[service.catalog.codes(["tea-new"])[0]] == 0
    answer = service.recommend("t4", k=5)
    ids = [line.item_id for line in answer]
    assert "tea-new" in ids and "coffee-new" not in ids
    line = answer[ids.index("tea-new")]
    assert line.kind == "similar_content" and line.evidence_item.startswith("tea-")
    similar = service.similar_items("tea-new", k=3)
    assert similar and all(s.item_id.startswith("tea-") for s in similar)


class _ScoresBelowZero:
    """The service's model with every score moved below zero (as BPR's or a ranker's may be)."""

    def __init__(self, model, shift: float) -> None:
        self._model, self._shift = model, shift

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def score(self, history, users=None):
        return self._model.score(history, users) - self._shift


def test_new_items_stay_below_the_best_item_when_a_model_scores_below_zero(service):
    # Regression: a best score at or below zero was replaced by 1, so every new item with any
    # content match (0.9 x similarity, above 0) went above all of the user's personal items.
    user = int(np.flatnonzero(service.user_ids == "t4")[0])
    row = service.history[user]
    top = float(service.model.score(row, np.array([user])).max())
    below = dataclasses.replace(service, model=_ScoresBelowZero(service.model, top + 0.5))
    plain, shifted = service.recommend("t4", k=20), below.recommend("t4", k=20)
    # The best score, the history's own items included, is now -0.5: each new item lands
    # below it, by at most its absolute value, and nothing scores above zero.
    new = [line.score for line in shifted if line.kind == "similar_content"]
    assert new and all(-1.0 <= score < -0.5 for score in new)
    assert all(line.score < 0 for line in shifted)
    personal = [line.item_id for line in shifted if line.kind == "because_you"]
    assert (
        personal == [line.item_id for line in plain if line.kind == "because_you"][: len(personal)]
    )
    fast = below.with_candidates(depth=10).recommend("t4", k=20)
    assert [line.item_id for line in fast] == [line.item_id for line in shifted]
    np.testing.assert_allclose([x.score for x in fast], [x.score for x in shifted], rtol=1e-5)


def test_new_item_content_scores_agree_with_the_content_model(service):
    # The fast path scores the new items only; the reference scores the whole catalog.
    new = service._popularity() == 0
    assert new.any()
    codes = np.flatnonzero(new)
    rows = []
    for user in ("t4", "c2"):
        row, _, _ = service._user_rows(service.user_row(user), [("tea-5", "view")])
        reference = service.content.score(row)[0, new]
        np.testing.assert_allclose(service._new_item_content(row, codes)[0], reference, rtol=1e-6)
        rows.append(row)
    # Several rows at once (the candidates' blocks) give each row's answer.
    both = service._new_item_content(sp.vstack(rows), codes)
    for index, row in enumerate(rows):
        np.testing.assert_allclose(both[index], service._new_item_content(row, codes)[0])
    empty, _, _ = service._user_rows(-1, ())
    assert not service._new_item_content(empty, codes).any()


def test_purchases_are_excluded_unless_the_category_is_repurchasable():
    events, items = shop()
    strict = RecommendationService.build(events, items, model="itemknn")
    assert "beans-0" not in {x.item_id for x in strict.recommend("c0", k=30)}
    assert "coffee-0" not in {x.item_id for x in strict.recommend("c0", k=30)}
    lenient = RecommendationService.build(
        events,
        items,
        model="itemknn",
        rules=BusinessRules(repurchasable_categories=("Pantry",)),
    )
    again = {x.item_id for x in lenient.recommend("c0", k=30)}
    assert "beans-0" in again and "coffee-0" not in again


def test_request_filters_and_bad_input(service):
    only_tea = service.recommend("c2", k=5, include_categories=["Drinks > Tea"])
    assert only_tea and all(line.item_id.startswith("tea-") for line in only_tea)
    with pytest.raises(ValueError, match="k must be between 1 and 1000"):
        service.recommend("c2", k=0)
    with pytest.raises(ValueError, match="session event types must be among"):
        service.recommend("c2", session_events=[("tea-1", "teleport")])
    with pytest.raises(KeyError, match="not in the catalog"):
        service.similar_items("no-such-item")


def test_build_refuses_an_empty_log_and_an_unknown_model():
    events, items = shop()
    with pytest.raises(ValueError, match="import events first"):
        RecommendationService.build(events.slice(0, 0), items)
    with pytest.raises(ValueError, match="cannot be built here"):
        RecommendationService.build(events, items, model="nonsense")
    with pytest.raises(ValueError, match=r"itemknn: unknown setting\(s\) k; it takes neighbors"):
        RecommendationService.build(events, items, model="itemknn", params={"k": 5})


def test_user_lookup_follows_the_user_arrays(service):
    positions = {str(user): row for row, user in enumerate(service.user_ids)}
    assert all(service.user_row(user) == row for user, row in positions.items())
    assert service.user_row("nobody") == -1
    lookup = service.user_lookup
    changed = service.with_items(pa.table({"item_id": ["tea-1"], "available": [False]}))
    assert changed.user_row("t3") == service.user_row("t3")
    assert changed.user_lookup is lookup  # a catalog change reuses it
    forgotten = service.without_user("t3")
    assert forgotten.user_row("t3") == -1
    fresh = UserLookup.of(forgotten.user_ids, forgotten.user_rows)
    assert forgotten.user_lookup.rows == fresh.rows
    assert service.user_row("t3") >= 0  # the original keeps its own


def test_verbs_are_found_in_sorted_and_unsorted_histories():
    verbs = np.array(["viewed", "carted", "bought"], dtype=object)
    evidence = np.array([7, -1, 3, 9])
    for seen in (np.array([3, 7, 9]), np.array([9, 3, 7])):
        said = _verbs_of(seen, verbs[[0, 1, 2]], evidence)
        expected = {int(s): v for s, v in zip(seen, verbs, strict=True)}
        assert [said[i] for i in (0, 2, 3)] == [expected[7], expected[3], expected[9]]
