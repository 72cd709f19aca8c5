"""The public datasets tailor can load by name (``tailor import dataset NAME``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from tailor.datasets.base import Dataset
from tailor.datasets.cdnow import load_cdnow
from tailor.datasets.media_mix import load_media_mix
from tailor.datasets.movielens import load_movielens_100k
from tailor.datasets.online_retail import load_online_retail
from tailor.datasets.open_bandit import load_open_bandit

LOADERS: dict[str, Callable[..., Dataset]] = {
    "movielens-100k": load_movielens_100k,
    "online-retail-ii": load_online_retail,
    "cdnow": load_cdnow,
    "cdnow-sample": partial(load_cdnow, sample=True),
    "open-bandit-random": partial(load_open_bandit, policy="random", campaign="all"),
    "open-bandit-bts": partial(load_open_bandit, policy="bts", campaign="all"),
    "media-mix": load_media_mix,
}
"""Loader of each dataset name. Every loader takes an optional ``path`` (default: below
:func:`tailor.datasets.base.data_dir`) and raises ``DataNotFoundError`` when the data is
missing."""


def load_dataset(name: str, **kwargs: object) -> Dataset:
    """Load the dataset called ``name`` (a key of :data:`LOADERS`).

    Parameters
    ----------
    name : the dataset name.
    **kwargs : passed on to the loader (e.g. ``path``).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    loader = LOADERS.get(name)
    if loader is None:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(LOADERS))}")
    return loader(**kwargs)
