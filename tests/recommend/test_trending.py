"""Trending: decay, per-context shares with shrinkage, categories, save/load, bad input; and
the event context the interaction log now carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from tailor.recommend.base import load_model
from tailor.recommend.catalog import Catalog
from tailor.recommend.interactions import InteractionLog
from tailor.recommend.models.trending import Trending

DAY = 86_400_000
NOW = 1_700_000_000_000
ITEM_IDS = np.array(["a", "b", "c", "d", "e"], dtype=object)
A, B, C, D, E = range(5)


def make_log(events: list[tuple[str, int, float, str | None]]) -> InteractionLog:
    """(user, item code, age in days, country) rows; every user is new, weights 1."""
    users = [f"u{n}" for n in range(len(events))]
    items = ITEM_IDS[[e[1] for e in events]]
    times = np.array([NOW - round(e[2] * DAY) for e in events], np.int64)
    return InteractionLog.from_arrays(
        np.array(users, dtype=object),
        items,
        times=times,
        item_ids=ITEM_IDS,
        context={"country": np.array([e[3] for e in events], dtype=object)},
    )


def fit(log: InteractionLog, catalog: Catalog | None = None, **params) -> Trending:
    return Trending(**params).fit(log.matrix(), log=log, catalog=catalog)


def countries() -> InteractionLog:
    """Country A mostly takes item a, B (busier) item b; everything happens today."""
    rows = [("", A, 0.0, "A")] * 30 + [("", B, 0.0, "A")] * 5
    rows += [("", B, 0.0, "B")] * 60 + [("", A, 0.0, "B")] * 5 + [("", C, 0.0, "B")] * 10
    rows += [("", C, 0.0, None)] * 3 + [("", D, 0.0, "C")]  # D: one event, in tiny country C
    return make_log(rows)


def shop() -> Catalog:
    rows = pa.table(
        {
            "item_id": ITEM_IDS.tolist(),
            "category": ["Home > Kitchen", "Home > Garden", "Home > Kitchen", "Sports", None],
        }
    )
    return Catalog.from_table(rows, ITEM_IDS)


def test_a_recent_burst_beats_an_older_bigger_count():
    rows = [("", A, 60.0, None)] * 20 + [("", B, 0.5, None)] * 4 + [("", C, 14.0, None)] * 4
    log = make_log(rows)
    model = fit(log, half_life_days=7)
    # Shares follow 2^(-age/7) per event, ages from the newest event (0.5 days old).
    mass = np.array([20 * 2 ** (-59.5 / 7), 4.0, 4 * 2 ** (-13.5 / 7), 0.0, 0.0])
    np.testing.assert_allclose(model.trend_, mass / mass.sum(), rtol=1e-5)
    assert model.score(sp.csr_matrix((2, 5))).argmax(axis=1).tolist() == [B, B]
    # A user without history gets what trends, not what most users ever took (a).
    ids, _ = model.recommend(sp.csr_matrix((1, 5)), k=2)
    assert ids[0].tolist() == [B, C]
    assert fit(log, half_life_days=1000).trend_.argmax() == A


def test_now_ms_measures_age_from_it_and_ignores_later_events():
    log = make_log([("", A, 10.0, "A")] * 3 + [("", B, 1.0, "A")] * 5)
    model = fit(log, now_ms=NOW - 5 * DAY)
    assert model.trend_[B] == 0 and model.trend_[A] == 1
    # Support decays with the age of the newest kept event: 3 events, 5 days old.
    np.testing.assert_allclose(model.context_support_, [3 * 2 ** (-5 / 7)], rtol=1e-6)
    with pytest.raises(ValueError, match="no event with a positive weight at or before now_ms"):
        fit(log, now_ms=NOW - 30 * DAY)


def test_each_country_gets_its_own_ranking():
    model = fit(countries(), shrinkage=5.0)
    assert model.trend_.argmax() == B
    assert model.score_context({"country": "A"})[0].argmax() == A
    assert model.score_context({"country": "B"})[0].argmax() == B
    scores = model.score_context({"country": "A"}, n_rows=3)
    assert scores.shape == (3, 5) and np.allclose(scores.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "context",
    [{"country": "ZZ"}, {}, {"country": None}, {"country": ""}, {"planet": "Mars"}],
)
def test_unknown_context_falls_back_to_overall(context):
    model = fit(countries())
    np.testing.assert_array_equal(model.score_context(context)[0], model.trend_)


def test_tiny_support_is_shrunk_toward_overall():
    log = countries()
    shrunk = fit(log, shrinkage=20.0)
    trusting = fit(log, shrinkage=0.0)
    assert trusting.score_context({"country": "C"})[0].argmax() == D
    assert shrunk.score_context({"country": "C"})[0].argmax() == B
    # p̃ = n/(n+m) p_C + m/(n+m) p with n = 1 event today and m = 20.
    own = np.eye(5)[D]
    expected = (1 / 21) * own + (20 / 21) * shrunk.trend_
    np.testing.assert_allclose(shrunk.score_context({"country": "C"})[0], expected, rtol=1e-5)


def test_several_fields_average_their_shrunk_vectors():
    log = countries()
    n = len(log)
    log.context["device_type"] = np.array(["app"] * (n - 1) + ["web"], dtype=object)
    model = fit(log, shrinkage=5.0)
    both = model.score_context({"country": "A", "device_type": "app"})[0]
    expected = (
        model.score_context({"country": "A"})[0] + model.score_context({"device_type": "app"})[0]
    ) / 2
    np.testing.assert_allclose(both, expected, rtol=1e-5)


def test_best_context_names_the_value_that_lifts_the_item():
    model = fit(countries(), shrinkage=5.0)
    assert model.best_context(A, {"country": "A"}) == ("country", "A")
    assert model.best_context(B, {"country": "A"}) is None  # less popular in A than overall
    assert model.best_context(np.array([A, B, E]), {"country": "B"}) == [
        None,
        ("country", "B"),
        None,
    ]
    assert model.best_context(A, {"country": "ZZ"}) is None
    assert model.best_context(A, {"country": "A"}, min_lift=100.0) is None


def test_top_and_rank_in_category():
    log = make_log(
        [("", A, 0.0, None)] * 2
        + [("", B, 0.0, None)] * 5
        + [("", C, 0.0, None)] * 3
        + [("", D, 0.0, None)] * 9
        + [("", E, 0.0, None)] * 20
    )
    model = fit(log, catalog=shop())
    ids, scores = model.top_in_category("Home", k=4)
    assert ids.tolist() == [B, C, A, -1] and np.isneginf(scores[3])
    assert model.top_in_category("Home > Kitchen", k=2)[0].tolist() == [C, A]
    assert model.top_in_category("Hom", k=2)[0].tolist() == [-1, -1]  # a prefix of a word
    assert model.top_in_category("Toys", k=1)[0].tolist() == [-1]
    assert model.rank_in_category(np.array([A, B, C, D, E])).tolist() == [3, 1, 2, 1, 0]
    assert model.rank_in_category(np.array([A, C]), depth=2).tolist() == [2, 1]


def test_save_and_load_round_trip(tmp_path):
    log = countries()
    model = fit(log, catalog=shop(), shrinkage=3.0, half_life_days=2.0)
    for loaded in (load_model(model.to_bytes()), load_model(model.save(tmp_path / "t.npz"))):
        assert isinstance(loaded, Trending) and loaded.get_params() == model.get_params()
        for context in ({"country": "A"}, {"country": "C"}, {"country": "ZZ"}):
            np.testing.assert_array_equal(
                loaded.score_context(context), model.score_context(context)
            )
        assert loaded.best_context(np.arange(5), {"country": "A"}) == model.best_context(
            np.arange(5), {"country": "A"}
        )
        np.testing.assert_array_equal(
            loaded.top_in_category("Home", 3)[0], model.top_in_category("Home", 3)[0]
        )
        history = log.matrix()
        np.testing.assert_array_equal(loaded.recommend(history)[0], model.recommend(history)[0])


def test_a_log_without_context_still_trends_overall():
    log = countries()
    log.context = None
    model = fit(log)
    assert model.context_keys_ == [] and model.context_trend_.shape == (0, 5)
    np.testing.assert_array_equal(model.score_context({"country": "A"})[0], model.trend_)


def test_max_context_values_keeps_the_best_supported():
    model = fit(countries(), max_context_values=1)
    assert model.context_keys_ == [["country", "B"]]
    np.testing.assert_array_equal(model.score_context({"country": "A"})[0], model.trend_)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"half_life_days": 0}, "half_life_days must be a number > 0"),
        ({"half_life_days": -3.0}, "half_life_days must be a number > 0"),
        ({"half_life_days": float("inf")}, "half_life_days must be a number > 0"),
        ({"shrinkage": -1.0}, "shrinkage must be a number >= 0"),
        ({"max_context_values": -1}, "max_context_values must be an integer >= 0"),
        ({"now_ms": 1.5}, "now_ms must be an integer"),
    ],
)
def test_bad_hyperparameters_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        fit(countries(), **params)


def test_bad_fit_and_query_input_is_refused():
    log = countries()
    with pytest.raises(ValueError, match="needs log="):
        Trending().fit(log.matrix())
    with pytest.raises(ValueError, match="log has 5 item codes; the interactions have 4"):
        Trending().fit(log.matrix()[:, :4], log=log)
    model = fit(log)
    with pytest.raises(ValueError, match="context must be a mapping"):
        model.score_context(["country", "A"])
    with pytest.raises(ValueError, match="n_rows must be at least 1"):
        model.score_context({}, n_rows=0)
    with pytest.raises(ValueError, match="needs the model fitted with catalog="):
        model.top_in_category("Home")
    with pytest.raises(ValueError, match=r"item code 7 is outside 0\.\.4"):
        model.best_context(7, {"country": "A"})
    with pytest.raises(ValueError, match="min_lift must be a number > 0"):
        model.best_context(A, {}, min_lift=0)
    with_catalog = fit(log, catalog=shop())
    with pytest.raises(ValueError, match="k must be at least 1"):
        with_catalog.top_in_category("Home", k=0)
    with pytest.raises(ValueError, match="depth must be at least 1"):
        with_catalog.rank_in_category(np.array([A]), depth=0)


# --- the context the interaction log carries -------------------------------------------------


def test_from_events_keeps_context_and_subset_carries_it():
    t0 = datetime(2024, 1, 10, tzinfo=UTC)
    events = pa.table(
        {
            "subject_id": ["u1", "u1", "u2", "u3"],
            "item_id": ["a", "b", "a", "b"],
            "event_type": ["view", "consent", "purchase", "view"],
            "occurred_at": pa.array(
                [t0, t0, t0 + timedelta(days=1), t0], pa.timestamp("us", tz="UTC")
            ),
            "country": ["DE", "DE", None, "FR"],
            "device_type": ["app", "app", "web", None],
            "session_id": ["s1", "s1", "s2", "s3"],
        }
    )
    log = InteractionLog.from_events(events)
    assert set(log.context) == {"country", "device_type"}  # session_id is not kept
    assert log.context["country"].tolist() == ["DE", "", "FR"]  # consent row left out
    assert log.context["device_type"].tolist() == ["app", "web", ""]
    part = log.subset(log.item == 1)
    assert part.context["country"].tolist() == ["FR"] and len(part) == 1
    no_context = InteractionLog.from_events(events.drop_columns(["country", "device_type"]))
    assert no_context.context is None and no_context.subset(no_context.user == 0).context is None


def test_from_arrays_checks_context():
    with pytest.raises(ValueError, match="context field 'planet' is not one of country"):
        InteractionLog.from_arrays(["u"], ["a"], context={"planet": ["Mars"]})
    with pytest.raises(ValueError, match="context 'country' must have one value per interaction"):
        InteractionLog.from_arrays(["u"], ["a"], context={"country": ["DE", "FR"]})
    log = InteractionLog.from_arrays(
        ["u", "v"], ["a", "a"], context={"channel": np.array([np.nan, "ads"], dtype=object)}
    )
    assert log.context["channel"].tolist() == ["", "ads"]
