"""The catalog: attributes land on the right item codes, and bad item rows are refused."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from tailor.recommend.catalog import UNKNOWN_TIME, Catalog


def rows() -> pa.Table:
    return pa.table(
        {
            "item_id": ["b", "a", "c"],
            "title": ["Bee", None, "Sea"],
            "category": ["Home|Kitchen", "Home", None],
            "price": [2.5, None, 1.0],
            "available": [True, False, None],
            "created_at": pa.array(
                [datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC), None, None],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def test_attributes_follow_the_given_item_codes_and_unknown_items_get_defaults():
    catalog = Catalog.from_table(rows(), np.array(["a", "z", "b"], object), category_separator="|")
    assert list(catalog.title) == ["", "", "Bee"]
    assert list(catalog.category) == ["Home", "", "Home > Kitchen"]
    assert np.isnan(catalog.price[0]) and np.isnan(catalog.price[1]) and catalog.price[2] == 2.5
    # "z" is not described: it was interacted with, so it exists and may be shown.
    assert list(catalog.available) == [False, True, True]
    assert list(catalog.eligible) == [False, True, True]
    assert list(catalog.described) == [True, False, True]
    # Microsecond timestamps are truncated to milliseconds, not refused.
    assert catalog.created_at[2] == 1704067200123 and catalog.created_at[0] == UNKNOWN_TIME
    assert list(catalog.codes(["b", "nope", "a"])) == [2, -1, 0]
    assert list(catalog.category_level(1)) == ["Home", "", "Home"]


def test_without_item_ids_the_rows_are_sorted_by_id():
    catalog = Catalog.from_table(rows())
    assert list(catalog.item_ids) == ["a", "b", "c"]
    assert catalog.available[2]  # a null flag means "not switched off"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"title": ["x"]}), "need an item_id column"),
        (pa.table({"item_id": ["a", None]}), "row 1 has no item_id"),
        (pa.table({"item_id": ["a", "b", "a"]}), "item_id 'a' appears twice"),
    ],
)
def test_bad_item_rows_are_refused_with_the_row_named(table, message):
    with pytest.raises(ValueError, match=message):
        Catalog.from_table(table)


def test_files_load_and_a_missing_file_is_a_clear_error(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,title,price\ni1,Mug,3.5\ni2,,\n")
    catalog = Catalog.from_file(path)
    assert list(catalog.title) == ["Mug", ""] and catalog.price[0] == 3.5
    with pytest.raises(FileNotFoundError, match="no such item file"):
        Catalog.from_file(tmp_path / "absent.csv")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match="cannot read it as CSV or Parquet"):
        Catalog.from_file(broken)
    with pytest.raises(ValueError, match="depth must be at least 1"):
        catalog.category_level(0)


def test_a_subset_reads_the_catalogs_attributes_of_its_items():
    catalog = Catalog.from_table(rows())
    codes = np.array([2, 0])
    subset = catalog.take(codes)
    assert len(subset) == 2
    assert subset.item_ids.tolist() == ["c", "a"]
    assert subset.category.tolist() == [catalog.category[2], catalog.category[0]]
    assert subset.eligible.tolist() == catalog.eligible[codes].tolist()
    with pytest.raises(AttributeError, match="nope"):
        subset.nope  # noqa: B018 - the attribute read is the test


def test_eligibility_follows_new_flag_arrays():
    catalog = Catalog.from_table(rows())
    before = catalog.eligible.copy()
    assert catalog.eligible is catalog.eligible  # computed once per pair of arrays
    catalog.available = np.ones(len(catalog), dtype=bool)
    assert catalog.eligible.all() and not before.all()
