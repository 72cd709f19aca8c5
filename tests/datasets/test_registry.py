from __future__ import annotations

import pytest

from tailor.datasets.registry import LOADERS, load_dataset


def test_names() -> None:
    assert set(LOADERS) == {
        "movielens-100k",
        "online-retail-ii",
        "cdnow",
        "cdnow-sample",
        "open-bandit-random",
        "open-bandit-bts",
        "media-mix",
    }


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="movielens-100k") as info:
        load_dataset("movielens-1b")
    assert all(name in str(info.value) for name in LOADERS)


@pytest.mark.parametrize(
    ("name", "dataset_name"),
    [("media-mix", "media-mix"), ("cdnow-sample", "cdnow-sample"),
     ("open-bandit-bts", "open-bandit-bts")],
)  # fmt: skip
def test_load_by_name(name: str, dataset_name: str, load_or_skip) -> None:
    data = load_or_skip(load_dataset, name)
    assert data.name == dataset_name
    assert data.events.num_rows > 0
