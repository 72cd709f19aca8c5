"""From events to the confidence matrix: weights, returns, decay, shared codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailor.recommend import EventWeights, InteractionLog
from tailor.recommend.interactions import encode_ids

T0 = datetime(2024, 1, 10, tzinfo=UTC)


def events(rows: list[tuple]) -> pa.Table:
    names = ("subject_id", "item_id", "event_type", "occurred_at", "value", "quantity")
    columns = list(zip(*rows, strict=True))
    types = [pa.string(), pa.string(), pa.string(), pa.timestamp("us", tz="UTC")]
    types += [pa.float64(), pa.float64()]
    return pa.table({n: pa.array(c, t) for n, c, t in zip(names, columns, types, strict=True)})


def test_event_types_add_their_weights():
    log = InteractionLog.from_events(
        events(
            [
                ("u1", "a", "view", T0, None, None),
                ("u1", "a", "add_to_cart", T0, None, 1.0),
                ("u1", "b", "purchase", T0, None, 3.0),
                ("u2", "b", "rating", T0, 4.0, None),
                ("u2", "a", "consent", T0, None, None),  # not an interaction
                (None, "a", "view", T0, None, None),  # no subject
            ]
        ),
        EventWeights(view=1, add_to_cart=4, purchase=8, rating=2),
    )
    matrix = log.matrix().toarray()
    assert log.user_ids.tolist() == ["u1", "u2"] and log.item_ids.tolist() == ["a", "b"]
    assert matrix.tolist() == [[5.0, 8.0], [0.0, 2.0]]
    assert log.matrix(binary=True).toarray().tolist() == [[1.0, 1.0], [0.0, 1.0]]


def test_ratings_can_count_their_value_and_returns_count_nothing():
    log = InteractionLog.from_events(
        events(
            [
                ("u1", "a", "rating", T0, 5.0, None),
                ("u1", "b", "purchase", T0, None, -1.0),
            ]
        ),
        EventWeights(rating_as_value=True),
    )
    assert log.item_ids.tolist() == ["a"]  # the returned item left no interaction
    assert log.matrix().toarray().tolist() == [[5.0]]


def test_decay_halves_the_weight_every_half_life():
    log = InteractionLog.from_events(
        events(
            [
                ("u1", "a", "view", T0, None, None),
                ("u1", "b", "view", T0 - timedelta(days=7), None, None),
                ("u1", "c", "view", T0 - timedelta(days=14), None, None),
            ]
        ),
        EventWeights(half_life_days=7),
    )
    assert log.matrix().toarray()[0] == pytest.approx([1.0, 0.5, 0.25])


def test_subsets_keep_the_codes_so_split_matrices_line_up():
    log = InteractionLog.from_arrays(["u1", "u2", "u1"], ["a", "b", "c"])
    train = log.matrix(np.array([True, True, False]))
    test = log.matrix(np.array([False, False, True]))
    assert train.shape == test.shape == (2, 3)
    assert test.toarray().tolist() == [[0, 0, 1], [0, 0, 0]]


def test_a_fixed_catalog_keeps_items_nobody_touched():
    log = InteractionLog.from_arrays(["u1"], ["b"], item_ids=np.array(["a", "b", "c"]))
    assert log.matrix().toarray().tolist() == [[0.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="'z' is not in item_ids"):
        InteractionLog.from_arrays(["u1"], ["z"], item_ids=np.array(["a", "b"]))


def test_bad_weights_and_shapes_are_refused():
    with pytest.raises(ValueError, match=r"EventWeights\.view must be >= 0"):
        EventWeights(view=-1)
    with pytest.raises(ValueError, match="half_life_days must be > 0"):
        EventWeights(half_life_days=0)
    with pytest.raises(ValueError, match="same length"):
        InteractionLog.from_arrays(["u1", "u2"], ["a"])


def test_missing_ids_and_misaligned_arrays_are_named():
    with pytest.raises(ValueError, match="items has no id at row 1"):
        InteractionLog.from_arrays(np.array(["u1", "u2"], object), np.array(["a", None], object))
    with pytest.raises(ValueError, match="times must have one entry per interaction"):
        InteractionLog.from_arrays(["u1"], ["a"], times=np.array([1, 2]))


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.lists(st.text(max_size=4), max_size=30),
        st.lists(st.integers(-5, 5), max_size=30),
    )
)
def test_encode_ids_agrees_with_numpy_unique(values: list) -> None:
    # The Arrow path must give NumPy's codes exactly: models and saved files depend on them.
    array = np.array(values, dtype=object if values and isinstance(values[0], str) else None)
    ids, codes = encode_ids(array)
    expected_ids, expected_codes = np.unique(array, return_inverse=True)
    assert ids.tolist() == expected_ids.tolist()
    assert codes.tolist() == expected_codes.tolist()
