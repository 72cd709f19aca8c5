"""What the API calls to answer "what should this visitor see next?".

:class:`RecommendationService` holds everything a request needs as arrays in memory: the
personal model, the trending model (cold start by context), the content model (items nobody
has touched yet), the catalog, the business rules and each known user's history. A request is
numpy work over those arrays: no database round trip, no loop over the catalog.

The order of a request:

1. the user's history row: what the log holds for them plus this session's events;
2. scores: with no history, trending in the request's context (country, device, channel);
   from the first event on, the personal model, with items that have no interactions yet
   scored by content similarity to the history;
3. items of the history are not shown again, except purchases, which the business rules
   decide on (consumables may come back);
4. business rules (availability, filters, boosts, diversity);
5. an explanation per item, from the model that put it there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from tailor.recommend.base import Recommender
from tailor.recommend.catalog import Catalog
from tailor.recommend.explain import EVENT_VERBS, explain
from tailor.recommend.interactions import INTERACTION_TYPES, EventWeights, InteractionLog
from tailor.recommend.models.content import ContentSimilarity
from tailor.recommend.models.trending import Trending
from tailor.recommend.rules import BusinessRules, apply_rules

NEW_ITEM_WEIGHT = 0.9
"""A new item's content score, as a share of the user's best personal score: a perfect
content match lands just below the user's best item, a weak one far below."""


@dataclass(frozen=True)
class RecommendedItem:
    """One answer line: the item, its score and why it is there."""

    item_id: str
    score: float
    reason: str
    kind: str
    source: str
    evidence_item: str | None


@dataclass
class RecommendationService:
    """Answers recommendation requests from preloaded arrays (see the module docstring).

    Build it with :meth:`build` from events and item rows; ``model`` is any fitted
    :class:`Recommender` whose item columns follow ``catalog`` (a hybrid, EASE, ...).
    """

    model: Recommender
    catalog: Catalog
    user_ids: np.ndarray
    history: sp.csr_matrix
    purchased: sp.csr_matrix
    strongest: sp.csr_matrix
    trending: Trending
    content: ContentSimilarity | None
    rules: BusinessRules
    weights: EventWeights

    @classmethod
    def build(
        cls,
        events: pa.Table,
        items: pa.Table | None = None,
        *,
        model: str = "ease",
        params: Mapping[str, Any] | None = None,
        rules: BusinessRules | None = None,
        weights: EventWeights | None = None,
        trending_half_life_days: float = 7.0,
    ) -> RecommendationService:
        """Fit the models on ``events`` (the store's event rows) and ``items`` (its item
        rows). ``model``/``params``: the personal model and its tuned configuration (what
        ``tailor evaluate recommend`` reports)."""
        weights = weights or EventWeights()
        log = InteractionLog.from_events(events, weights)
        if len(log) == 0:
            raise ValueError(
                "no interactions (views, clicks, carts, purchases, ratings) with a subject and "
                "an item: import events first"
            )
        item_ids = log.item_ids
        if items is not None and items.num_rows:
            item_ids = np.union1d(log.item_ids, items["item_id"].to_numpy(zero_copy_only=False))
            log = InteractionLog.from_events(events, weights, item_ids=item_ids)
        catalog = (
            Catalog.from_table(items, item_ids)
            if items is not None
            else Catalog.from_table(pa.table({"item_id": pa.array([], pa.string())}), item_ids)
        )
        history = log.matrix()
        if model not in Recommender._registry or model == "hybrid":
            raise ValueError(
                f"model {model!r} cannot be built here; choose one of "
                f"{', '.join(sorted(set(Recommender._registry) - {'base', 'hybrid'}))}"
            )
        personal = Recommender._registry[model](**dict(params or {}))
        personal.fit(history, log=log, catalog=catalog)
        trending = Trending(half_life_days=trending_half_life_days).fit(history, log=log)
        content = None
        if catalog.described.any():
            content = ContentSimilarity().fit(history, catalog=catalog)
        purchased, strongest = _event_matrices(events, log)
        return cls(
            model=personal,
            catalog=catalog,
            user_ids=log.user_ids,
            history=history,
            purchased=purchased,
            strongest=strongest,
            trending=trending,
            content=content,
            rules=rules or BusinessRules(),
            weights=weights,
        )

    # --- requests --------------------------------------------------------------------------

    def recommend(
        self,
        user_id: str,
        *,
        k: int = 10,
        context: Mapping[str, str] | None = None,
        session_events: Sequence[tuple[str, str]] = (),
        include_categories: Sequence[str] | None = None,
        exclude_categories: Sequence[str] | None = None,
    ) -> list[RecommendedItem]:
        """The top ``k`` items for ``user_id`` after business rules, each explained.

        ``session_events``: ``(item_id, event_type)`` pairs that happened since the models
        were built (this session's views and carts): they count at once, without
        retraining. Unknown items in them are ignored (they cannot be scored yet).
        """
        if not 1 <= k <= 1000:
            raise ValueError(f"k must be between 1 and 1000, got {k}")
        context = dict(context or {})
        user = _position(self.user_ids, user_id)
        row, purchased, strongest = self._user_rows(user, session_events)
        seen = row.indices
        if row.nnz == 0:
            scores = self.trending.score_context(context)
            explainer: Recommender = self.trending
        else:
            # With new session events a known user's learned state is stale: fold them in.
            scores = self.model.score(row, np.array([-1 if session_events else user]))
            explainer = self.model
            scores = self._with_new_items(scores, row)
        # Items the user already met are not shown again; purchases are the rules' to judge.
        not_bought = np.setdiff1d(seen, purchased.indices)
        scores[0, not_bought] = -np.inf
        ids, values = apply_rules(
            scores,
            catalog=self.catalog,
            rules=self.rules,
            k=k,
            purchased=purchased,
            item_similarity=self._similarity(),
            include_categories=include_categories,
            exclude_categories=exclude_categories,
        )
        chosen = ids[0][ids[0] >= 0]
        values = values[0][: len(chosen)]
        verbs = [EVENT_VERBS.get(INTERACTION_TYPES[c - 1], "interacted with") for c in strongest]
        reasons = self._explain(explainer, seen, chosen, verbs, context)
        return [
            RecommendedItem(
                item_id=str(self.catalog.item_ids[item]),
                score=float(value),
                reason=reason.text,
                kind=reason.kind,
                source=reason.source,
                evidence_item=reason.evidence_item,
            )
            for item, value, reason in zip(chosen, values, reasons, strict=True)
        ]

    def similar_items(self, item_id: str, *, k: int = 10) -> list[RecommendedItem]:
        """Items like ``item_id``: by the personal model's item similarity where it has one
        and the item has interactions, else by content (so a new item has neighbours too)."""
        if not 1 <= k <= 1000:
            raise ValueError(f"k must be between 1 and 1000, got {k}")
        code = int(self.catalog.codes([item_id])[0])
        if code < 0:
            raise KeyError(f"item {item_id!r} is not in the catalog")
        everything = np.arange(len(self.catalog))
        similarity = None
        source = self.model.name
        if self.model.item_popularity_[code] > 0:
            similarity = self.model.item_similarity(np.array([code]), everything)
        if similarity is None and self.content is not None:
            similarity, source = (
                self.content.item_similarity(np.array([code]), everything),
                "content",
            )
        if similarity is None:
            return []
        scores = np.asarray(similarity, dtype=np.float32).reshape(1, -1).copy()
        scores[0, code] = -np.inf
        scores[scores <= 0] = -np.inf
        ids, values = apply_rules(scores, catalog=self.catalog, rules=self.rules, k=k)
        title = self.catalog.title[code] or item_id
        return [
            RecommendedItem(
                item_id=str(self.catalog.item_ids[item]),
                score=float(value),
                reason=f"Similar to {title}",
                kind="similar_content" if source == "content" else "similar_item",
                source=source,
                evidence_item=item_id,
            )
            for item, value in zip(ids[0], values[0], strict=True)
            if item >= 0
        ]

    # --- internals -------------------------------------------------------------------------

    def _user_rows(
        self, user: int, session_events: Sequence[tuple[str, str]]
    ) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
        n_items = len(self.catalog)
        empty = sp.csr_matrix((1, n_items), dtype=np.float32)
        row = self.history[user] if user >= 0 else empty
        purchased = self.purchased[user] if user >= 0 else empty
        strength = self.strongest[user] if user >= 0 else empty
        if session_events:
            item_ids, kinds = zip(*session_events, strict=True)
            unknown_kinds = set(kinds) - set(INTERACTION_TYPES)
            if unknown_kinds:
                raise ValueError(
                    f"session event types must be among {', '.join(INTERACTION_TYPES)}; "
                    f"got {', '.join(sorted(unknown_kinds))}"
                )
            codes = self.catalog.codes(list(item_ids))
            known = codes >= 0
            kinds_arr = np.asarray(kinds, dtype=object)[known]
            codes = codes[known]
            added = np.array([self.weights.of(kind) for kind in kinds_arr], np.float32)
            cols = np.zeros(len(codes), np.int64)
            row = row + sp.csr_matrix((added, (cols, codes)), shape=(1, n_items))
            bought = kinds_arr == "purchase"
            purchased = purchased + sp.csr_matrix(
                (np.ones(bought.sum(), np.float32), (cols[bought], codes[bought])),
                shape=(1, n_items),
            )
            rank = np.array([INTERACTION_TYPES.index(kind) + 1 for kind in kinds_arr])
            strength = strength.maximum(
                sp.csr_matrix((rank.astype(np.float32), (cols, codes)), shape=(1, n_items))
            )
        row, purchased, strength = (sp.csr_matrix(m) for m in (row, purchased, strength))
        for matrix in (row, purchased, strength):
            matrix.eliminate_zeros()
            matrix.sort_indices()
        # One event-type code per history item, in the order of row.indices.
        codes_by_item = np.zeros(n_items, np.int64)
        codes_by_item[strength.indices] = strength.data.astype(np.int64)
        strongest = np.maximum(codes_by_item[row.indices], 1)
        return row, purchased, strongest

    def _with_new_items(self, scores: np.ndarray, row: sp.csr_matrix) -> np.ndarray:
        """Give items nobody has touched a content score next to the personal ones."""
        if self.content is None:
            return scores
        new = self.model.item_popularity_ == 0
        if not new.any():
            return scores
        personal = scores[0, ~new]
        finite = personal[np.isfinite(personal)]
        best = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        similar = self.content.score(row)[0, new]
        scores = scores.copy()
        scores[0, new] = np.where(similar > 0, similar * best * NEW_ITEM_WEIGHT, -np.inf)
        return scores

    def _similarity(self):
        if self.rules.diversity != "mmr":
            return None
        if self.content is not None:
            return self.content.item_similarity
        return self.model.item_similarity

    def _explain(
        self,
        explainer: Recommender,
        seen: np.ndarray,
        chosen: np.ndarray,
        verbs: list[str],
        context: Mapping[str, str],
    ) -> list:
        if not len(chosen):
            return []
        new = self.model.item_popularity_[chosen] == 0
        out = list(explain(explainer, seen, chosen, self.catalog, verbs=verbs, context=context))
        if new.any() and self.content is not None and len(seen):
            by_content = explain(
                self.content, seen, chosen[new], self.catalog, verbs=verbs, context=context
            )
            for slot, reason in zip(np.flatnonzero(new), by_content, strict=True):
                out[slot] = reason
        return out


def _position(user_ids: np.ndarray, user_id: str) -> int:
    index = int(np.searchsorted(user_ids, user_id))
    return index if index < len(user_ids) and user_ids[index] == user_id else -1


def _event_matrices(events: pa.Table, log: InteractionLog) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(purchased, strongest event-type code) per user × item, for rules and explanations."""
    kinds = InteractionLog.from_events(
        events,
        EventWeights(
            **{kind: float(INTERACTION_TYPES.index(kind) + 1) for kind in INTERACTION_TYPES}
        ),
        item_ids=log.item_ids,
    )
    users = np.searchsorted(log.user_ids, kinds.user_ids[kinds.user])
    shape = (log.n_users, log.n_items)
    # Repeated interactions would sum in a sparse matrix; keep the strongest type instead
    # (the type code is its place in INTERACTION_TYPES, later = stronger).
    order = np.lexsort((kinds.weight, kinds.item, users))
    last = np.ones(len(order), bool)
    last[:-1] = (users[order][1:] != users[order][:-1]) | (
        kinds.item[order][1:] != kinds.item[order][:-1]
    )
    keep = order[last]
    strongest = sp.csr_matrix(
        (kinds.weight[keep], (users[keep], kinds.item[keep])), shape=shape, dtype=np.float32
    )
    bought = kinds.weight[keep] == INTERACTION_TYPES.index("purchase") + 1
    purchased = sp.csr_matrix(
        (np.ones(bought.sum(), np.float32), (users[keep][bought], kinds.item[keep][bought])),
        shape=shape,
    )
    return purchased, strongest
