"""What the API answers about customers: one scored customer base, looked up by pseudonym."""

from __future__ import annotations

import json
import os
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tailor.audience.model import AudienceModel
from tailor.audience.rfm import PURPOSE, as_day, last_purchase_day
from tailor.audience.segments import segment_summary
from tailor.store.base import Store

SCORE_KIND = "audience"
"""The store's ``customer_scores`` kind that ``tailor audience score`` writes."""
AS_OF_META = "audience_scores_as_of"
VERSION_META = "audience_scores_version"
"""Changes with every ``store_scores``: how every server worker learns of new scores."""


class AudienceService:
    """Every customer's scores (see :meth:`AudienceModel.score`) and the segments' summary,
    reloadable from the store while the server runs."""

    def __init__(
        self, scores: pa.Table, described: dict[str, Any], model_folder: str | Path | None = None
    ) -> None:
        self.model_folder = model_folder
        # One reference for all of it: readers never see half a reload or erasure.
        self._snapshot = _snapshot(scores, described)
        self._seen: tuple | None = None

    @property
    def scores(self) -> pa.Table:
        return self._snapshot[0]

    @property
    def described(self) -> dict[str, Any]:
        return self._snapshot[2]

    @classmethod
    def from_store(cls, model_folder: str | Path, store: Store) -> AudienceService:
        """The scores ``tailor audience score`` stored, or, when there are none, every
        customer scored now from the stored purchases."""
        seen = _version(model_folder, store)
        service = cls(*_load(model_folder, store), model_folder=model_folder)
        service._seen = seen
        return service

    def reload(self, store: Store) -> None:
        """Read the model and the stored scores again (after a new ``fit`` and ``score``)."""
        if self.model_folder is None:
            raise ValueError("this audience service was not loaded from a model folder")
        # Seen before loading: a broken model is tried once, not on every poll (writing a
        # fixed one changes it again).
        self._seen = _version(self.model_folder, store)
        scores, described = _load(self.model_folder, store)
        self._snapshot = _snapshot(scores, described)

    def reload_if_changed(self, store: Store) -> bool:
        """Reload when scores were stored or the model folder was written since the last
        load, by any process: each server worker's poller calls this, so one
        ``tailor audience score`` (or one worker's ``POST /v1/admin/reload``) reaches all."""
        if self.model_folder is None or _version(self.model_folder, store) == self._seen:
            return False
        self.reload(store)
        return True

    def forget(self, pseudonyms: list[str]) -> None:
        """Drop erased customers (the server's erasure reaches here); one swap, so a
        concurrent reader sees the scores before or after, never half."""
        scores, rows, described, _ = self._snapshot
        gone = set(pseudonyms) & rows.keys()
        if gone:
            keep = pc.invert(pc.is_in(scores["customer_id"], pa.array(sorted(gone))))
            self._snapshot = _snapshot(scores.filter(keep), described)

    def profile(self, pseudonym: str) -> dict[str, Any] | None:
        scores, rows, _, _ = self._snapshot
        row = rows.get(pseudonym)
        if row is None:
            return None
        values = scores.slice(row, 1).to_pylist()[0]
        values.pop("customer_id")
        values["churn_reasons"] = json.loads(values["churn_reasons"])
        values["last_purchase"] = str(values["last_purchase"])
        return values

    def segments(self) -> dict[str, Any]:
        scores, _, described, segments = self._snapshot
        return {
            "as_of": described["scored_as_of"],
            "customers": scores.num_rows,
            "segments": segments,
            "clusters": described["clusters"]["descriptions"],
        }


def store_scores(store: Store, scores: pa.Table, as_of: date, scored_at: datetime) -> int:
    """Replace the stored audience scores with ``scores`` of the customer base as of
    ``as_of`` (one JSON payload per customer, the day in the store's meta), atomically."""
    rows = scores.to_pylist()
    ids = [row.pop("customer_id") for row in rows]
    payloads = [json.dumps(row, default=str) for row in rows]
    with store.transaction():
        stored = store.replace_scores(SCORE_KIND, ids, payloads, scored_at)
        store.set_meta(AS_OF_META, str(as_of))
        store.set_meta(VERSION_META, f"{scored_at.isoformat()} {uuid.uuid4().hex}")
    return stored


def _version(model_folder: str | Path, store: Store) -> tuple:
    """What a reload would read: the stored scores' version and the model header's stat."""
    try:
        header = os.stat(Path(model_folder) / "audience.json")
        written = (header.st_mtime_ns, header.st_size)
    except OSError:
        written = None
    return store.get_meta(VERSION_META), written


def _load(model_folder: str | Path, store: Store) -> tuple[pa.Table, dict[str, Any]]:
    model = AudienceModel.load(model_folder)
    stored = store.read_scores(SCORE_KIND)
    if stored:
        scores = pa.Table.from_pylist(
            [{"customer_id": subject, **json.loads(payload)} for subject, payload, _ in stored]
        )
        as_of = store.get_meta(AS_OF_META) or str(as_day(max(when for _, _, when in stored)))
        return scores, {**model.describe(), "scored_as_of": as_of}
    day = last_purchase_day(store)
    if day is None:
        raise ValueError("the store holds no purchases of customers with analytics consent")
    return model.score(store, day), {**model.describe(), "scored_as_of": str(day)}


def _snapshot(scores: pa.Table, described: dict[str, Any]) -> tuple:
    """Scores, their row per customer, the description and the segments' summary, built
    once per load or erasure, not per request."""
    rows = {customer: row for row, customer in enumerate(scores["customer_id"].to_pylist())}
    return scores, rows, described, segment_summary(scores)


def may_profile(store: Store, pseudonym: str) -> bool:
    """Analytics consent for a customer (scores were computed at start-up; a revocation or
    erasure since must take effect at once)."""
    from tailor.events.privacy import may_use

    return may_use(store, pseudonym, PURPOSE)
