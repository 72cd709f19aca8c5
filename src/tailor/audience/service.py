"""What the API answers about customers: one scored customer base, looked up by pseudonym."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tailor.audience.model import AudienceModel
from tailor.audience.rfm import as_day
from tailor.audience.segments import segment_summary
from tailor.store.base import Store

PURPOSE = "analytics"
SCORE_KIND = "audience"
"""The store's ``customer_scores`` kind that ``tailor audience score`` writes."""
PURCHASE_COLUMNS = ["subject_id", "occurred_at", "quantity", "price", "item_id", "event_type"]


def read_purchases(store: Store) -> pa.Table:
    """Purchase lines of the customers whose analytics consent allows it."""
    return store.read_events(purpose=PURPOSE, event_types=["purchase"], columns=PURCHASE_COLUMNS)


class AudienceService:
    """Every customer's scores (see :meth:`AudienceModel.score`) as of the last purchase,
    and the segments' summary."""

    def __init__(self, scores: pa.Table, described: dict[str, Any]) -> None:
        self.described = described
        self._snapshot = _indexed(scores)  # one reference: readers never see half a swap

    @property
    def scores(self) -> pa.Table:
        return self._snapshot[0]

    @classmethod
    def from_store(cls, model_folder: str | Path, store: Store) -> AudienceService:
        """The scores ``tailor audience score`` stored, or, when there are none, every
        customer scored now from the stored purchases."""
        model = AudienceModel.load(model_folder)
        stored = store.read_scores(SCORE_KIND)
        if stored:
            scored_at = max(when for _, _, when in stored)
            scores = pa.Table.from_pylist(
                [{"customer_id": subject, **json.loads(payload)} for subject, payload, _ in stored]
            )
            return cls(scores, {**model.describe(), "scored_as_of": str(as_day(scored_at))})
        purchases = read_purchases(store)
        if purchases.num_rows == 0:
            raise ValueError("the store holds no purchases of customers with analytics consent")
        as_of = as_day(pc.max(purchases["occurred_at"]).as_py())
        return cls(model.score(purchases, as_of), {**model.describe(), "scored_as_of": str(as_of)})

    def forget(self, pseudonyms: list[str]) -> None:
        """Drop erased customers (the server's erasure reaches here); one swap, so a
        concurrent reader sees the scores before or after, never half."""
        scores, rows = self._snapshot
        gone = set(pseudonyms) & rows.keys()
        if gone:
            keep = pc.invert(pc.is_in(scores["customer_id"], pa.array(sorted(gone))))
            self._snapshot = _indexed(scores.filter(keep))

    def profile(self, pseudonym: str) -> dict[str, Any] | None:
        scores, rows = self._snapshot
        row = rows.get(pseudonym)
        if row is None:
            return None
        values = scores.slice(row, 1).to_pylist()[0]
        values.pop("customer_id")
        values["churn_reasons"] = json.loads(values["churn_reasons"])
        values["last_purchase"] = str(values["last_purchase"])
        return values

    def segments(self) -> dict[str, Any]:
        return {
            "as_of": self.described["scored_as_of"],
            "customers": self.scores.num_rows,
            "segments": segment_summary(self.scores),
            "clusters": self.described["clusters"]["descriptions"],
        }


def store_scores(store: Store, scores: pa.Table, scored_at: datetime) -> int:
    """Replace the stored audience scores with ``scores`` (one JSON payload per customer)."""
    rows = scores.to_pylist()
    ids = [row.pop("customer_id") for row in rows]
    payloads = [json.dumps(row, default=str) for row in rows]
    return store.replace_scores(SCORE_KIND, ids, payloads, scored_at)


def _indexed(scores: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    return scores, {customer: row for row, customer in enumerate(scores["customer_id"].to_pylist())}


def may_profile(store: Store, pseudonym: str) -> bool:
    """Not erased, and the latest analytics consent allows it (or the purpose is opt-out
    and there is none). Checked per request: scores were computed at start-up, and a
    revocation or erasure since must take effect at once."""
    if store.is_erased(pseudonym):
        return False
    records = [r for r in store.consent_records(pseudonym) if r.purpose == PURPOSE]
    if records:
        return records[-1].granted
    return PURPOSE in getattr(store, "opt_out_purposes", frozenset())
