"""MovieLens 100K (GroupLens): 100,000 ratings of 1,682 movies by 943 users, 1997-1998.

The files are read where they lie (``movielens-100k/`` below
:func:`~tailor.datasets.base.data_dir`); their license forbids redistribution, so nothing of
them is ever copied into the project.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tailor.datasets.base import Dataset, dataset_path
from tailor.events.schema import EARLIEST

CITATION = (
    "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and "
    "Context. ACM Transactions on Interactive Intelligent Systems 5, 4, Article 19. "
    "https://doi.org/10.1145/2827872 (GroupLens MovieLens 100K; research use only, "
    "no redistribution)"
)

GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
"""The 19 genre flags of ``u.item``, in column order (as listed in ``u.genre``)."""

GENRE_SEPARATOR = "|"
"""Genres are not a hierarchy, so they are joined with MovieLens' own separator rather than
the category-path separator ``' > '``."""

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
)}  # fmt: skip


def _folder(path: str | Path | None) -> Path:
    if path is None:
        return dataset_path("movielens-100k")
    folder = Path(path)
    return folder.parent if folder.is_file() else folder


def _release_date(text: str) -> datetime | None:
    # "01-Jan-1995"; parsed by hand because strptime's %b depends on the process locale
    try:
        day, month, year = text.split("-")
        return datetime(int(year), _MONTHS[month], int(day), tzinfo=UTC)
    except (ValueError, KeyError):
        return None


def _ratings(folder: Path) -> pa.Table:
    raw = pacsv.read_csv(
        folder / "u.data",
        read_options=pacsv.ReadOptions(column_names=["user", "item", "rating", "timestamp"]),
        parse_options=pacsv.ParseOptions(delimiter="\t"),
        convert_options=pacsv.ConvertOptions(
            column_types={
                "user": pa.string(),
                "item": pa.string(),
                "rating": pa.float64(),
                "timestamp": pa.int64(),
            }
        ),
    )
    user, item = raw["user"], raw["item"]
    n = raw.num_rows
    seconds = pc.multiply(raw["timestamp"], 1_000_000)
    return pa.table(
        {
            "event_id": pc.binary_join_element_wise("ml100k", user, item, "-"),
            "line": pa.repeat(0, n).cast(pa.int64()),
            "event_type": pa.repeat("rating", n),
            "occurred_at": seconds.cast(pa.timestamp("us", tz="UTC")),
            "subject_id": pc.binary_join_element_wise("ml-u", user, ""),
            "item_id": pc.binary_join_element_wise("ml-i", item, ""),
            "value": raw["rating"],
        }
    )


def _items(folder: Path) -> pa.Table:
    rows: dict[str, list] = {
        k: [] for k in ("item_id", "title", "category", "created_at", "attributes")
    }
    text = (folder / "u.item").read_text(encoding="latin-1")
    for record in text.splitlines():
        if not record:
            continue
        fields = record.split("|")
        movie, title, release, _video_release, imdb_url = fields[:5]
        genres = [g for g, flag in zip(GENRES, fields[5:], strict=True) if flag == "1"]
        created = _release_date(release)
        # tailor timestamps start at 1970 (EARLIEST); older films keep their date in attributes
        listed = created if created is not None and created >= EARLIEST else None
        rows["item_id"].append(f"ml-i{movie}")
        rows["title"].append(title)
        rows["category"].append(GENRE_SEPARATOR.join(genres) or None)
        rows["created_at"].append(listed)
        attributes = {
            "genres": genres,
            "release_date": created.date().isoformat() if created else None,
            "imdb_url": imdb_url or None,
        }
        rows["attributes"].append(json.dumps(attributes, separators=(",", ":")))
    n = len(rows["item_id"])
    return pa.table(
        {
            **rows,
            "created_at": pa.array(rows["created_at"], pa.timestamp("us", tz="UTC")),
            "available": pa.repeat(True, n),
            "active": pa.repeat(True, n),
        }
    )


def _users(folder: Path) -> pa.Table:
    ids, attributes = [], []
    for record in (folder / "u.user").read_text(encoding="latin-1").splitlines():
        if not record:
            continue
        user, age, gender, occupation, _zip_code = record.split("|")
        ids.append(f"ml-u{user}")
        attributes.append(
            json.dumps(
                {"age": int(age), "gender": gender, "occupation": occupation},
                separators=(",", ":"),
            )
        )
    return pa.table({"user_id": ids, "attributes": attributes})


def load_movielens_100k(path: str | Path | None = None) -> Dataset:
    """Load MovieLens 100K as ``rating`` events plus the user and item tables.

    Parameters
    ----------
    path : the ``ml-100k`` folder (or any file in it); default ``movielens-100k/`` below
        :func:`~tailor.datasets.base.data_dir`.

    Returns
    -------
    Dataset
        ``events``: one ``rating`` per line of ``u.data`` (tab-separated
        ``user item rating timestamp``): ``event_id = "ml100k-{user}-{item}"`` (a user rates
        a movie once), ``subject_id = "ml-u{user}"``, ``item_id = "ml-i{item}"``,
        ``value`` = the rating (1-5), ``occurred_at`` = the unix timestamp in UTC.

        ``items``: one per line of ``u.item`` (pipe-separated, latin-1): ``title``,
        ``category`` = the genres joined with ``|``, ``created_at`` = the release date
        (null where the file has none or it is before 1970, tailor's earliest timestamp;
        ``attributes.release_date`` always has it), ``attributes`` = ``{"genres", "release_date",
        "imdb_url"}``, ``available`` and ``active`` true.

        ``users``: one per line of ``u.user``: ``attributes = {"age", "gender",
        "occupation"}``. The zip code is dropped on purpose (see ``notes``).
    """
    folder = _folder(path)
    return Dataset(
        name="movielens-100k",
        events=_ratings(folder),
        users=_users(folder),
        items=_items(folder),
        citation=CITATION,
        notes=[
            "u.user zip codes are dropped: with age, gender and occupation a zip code is a "
            "quasi-identifier that can single a person out.",
            "The video release date column of u.item is empty for every movie and is not kept.",
            "Items released before 1970 have no created_at (tailor's timestamps start in "
            "1970); their release date is in attributes.release_date.",
        ],
    )
