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

import dataclasses
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from tailor.files import replace_text
from tailor.recommend.base import Recommender, load_model, make_model
from tailor.recommend.candidates import DEFAULT_DEPTH, TopCandidates, compute_top_candidates
from tailor.recommend.catalog import Catalog
from tailor.recommend.explain import (
    EVENT_VERBS,
    Explanation,
    because,
    explain,
    similarity_kind,
    strongest_links,
)
from tailor.recommend.interactions import INTERACTION_TYPES, EventWeights, InteractionLog
from tailor.recommend.models.content import ContentSimilarity
from tailor.recommend.models.trending import Trending
from tailor.recommend.rules import (
    MMR_POOL,
    BusinessRules,
    apply_rules,
    removes_only_unavailable_and_bought,
)

NEW_ITEM_WEIGHT = 0.9
"""A new item's content score, as a share of the user's best personal score: a perfect
content match lands just below the user's best item, a weak one far below."""


def new_item_scores(similar: np.ndarray, best: np.ndarray | float) -> np.ndarray:
    """Personal scores of items nobody has touched, from their content similarity to the
    user's history (0-1), on the scale of the user's best personal score ``best``.

    ``best - |best| * (1 - NEW_ITEM_WEIGHT * similar)``: where ``best`` is positive this is
    ``NEW_ITEM_WEIGHT * similar * best``, a share of it; where a model scores on another scale
    (negative dot products, log-odds) a perfect match still lands just below the best item and a
    weak one about ``|best|`` below it, never above it. A ``best`` of 0 takes 1 as its scale.
    """
    best = np.asarray(best, dtype=np.float32)
    scale = np.where(best != 0, np.abs(best), np.float32(1.0))
    return best - scale * (np.float32(1.0) - np.float32(NEW_ITEM_WEIGHT) * similar)


@dataclass
class RecommendedItem:
    """One answer line: the item, its score and why it is there.

    A value, never changed once made. Neither frozen nor slotted, as every answer builds ten
    or more and writes them as JSON: measured for ten lines, a frozen dataclass takes 12 µs to
    build (this one 2), and orjson writes slotted ones in 12 µs (these in 2)."""

    item_id: str
    score: float
    reason: str
    kind: str
    source: str
    evidence_item: str | None


@dataclass(frozen=True)
class UserLookup:
    """User id → history row, as a dict, for the arrays it was built from.

    A bisection over a million Python strings cost about 20 µs, twice per request; a dict
    answers in well under one, for under 100 bytes a user. A service copied for a catalog
    change keeps the same arrays and so the same lookup.
    """

    user_ids: np.ndarray
    user_rows: np.ndarray | None
    rows: dict[str, int]

    @classmethod
    def of(cls, user_ids: np.ndarray, user_rows: np.ndarray | None) -> UserLookup:
        rows = user_rows if user_rows is not None else np.arange(len(user_ids))
        return cls(user_ids, user_rows, dict(zip(user_ids.tolist(), rows.tolist(), strict=True)))

    def built_from(self, user_ids: np.ndarray, user_rows: np.ndarray | None) -> bool:
        return self.user_ids is user_ids and self.user_rows is user_rows

    def without(
        self, gone: Iterable[str], user_ids: np.ndarray, user_rows: np.ndarray | None
    ) -> UserLookup:
        """The lookup of ``user_ids``/``user_rows``: these arrays less the ids ``gone`` (the
        others keep their rows)."""
        rows = dict(self.rows)
        for user_id in gone:
            rows.pop(user_id, None)
        return UserLookup(user_ids, user_rows, rows)


@dataclass
class RecommendationService:
    """Answers recommendation requests from preloaded arrays (see the module docstring).

    Build it with :meth:`build` from events and item rows; ``model`` is any fitted
    :class:`Recommender` whose item columns follow ``catalog`` (a hybrid, EASE, ...).

    ``user_rows`` gives, for each entry of ``user_ids``, its row in ``history``,
    ``purchased``, ``strongest`` and the model's per-user state (None: the identity, as
    :meth:`build` makes it); erasure (:meth:`without_user`) removes a user from
    ``user_ids`` without renumbering the rows. The catalog may grow past the model's item
    columns (:meth:`with_items`): such items are scored by content similarity only.
    ``co_purchase`` (items × items, how many users bought or carted both) answers
    :meth:`bought_together`; ``info`` describes the artifact (version, model, created).
    ``candidates``: each known user's best items before the rules
    (:meth:`with_candidates`), the fast path of :meth:`recommend`.
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
    user_rows: np.ndarray | None = None
    co_purchase: sp.csr_matrix | None = None
    info: dict[str, Any] = field(default_factory=dict)
    candidates: TopCandidates | None = None
    user_lookup: UserLookup | None = field(default=None, repr=False, compare=False)
    reasons: dict[tuple[int, bool, str], Explanation] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Explanations already worded, by (evidence item, item is new, verb): the same few
    thousand sentences serve every user. Each copy of a service (a catalog change may retitle
    an item) starts its own."""

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
        if model not in Recommender._registry:
            raise ValueError(
                f"model {model!r} cannot be built here; choose one of "
                f"{', '.join(sorted(set(Recommender._registry) - {'base'}))}"
            )
        personal = make_model(model, None if params is None else dict(params))
        personal.fit(history, log=log, catalog=catalog)
        trending = Trending(half_life_days=trending_half_life_days).fit(history, log=log)
        content = None
        if catalog.described.any():
            content = ContentSimilarity().fit(history, catalog=catalog)
        purchased, strongest = _event_matrices(events, log)
        created = datetime.now(UTC)
        window = [_iso_ms(int(log.time.min())), _iso_ms(int(log.time.max()))] if len(log) else None
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
            co_purchase=co_purchases(strongest),
            info={
                "version": f"{model}-{created:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
                "model": model,
                "params": personal.get_params(),
                "created": created.isoformat(timespec="seconds"),
                "data_window": window,
                "users": int(log.n_users),
                "items": int(log.n_items),
            },
        )

    @property
    def version(self) -> str:
        """The artifact's version (``info["version"]``), "unversioned" when it has none."""
        return str(self.info.get("version") or "unversioned")

    # --- requests --------------------------------------------------------------------------

    def recommend(
        self,
        user_id: str | None,
        *,
        k: int = 10,
        context: Mapping[str, str] | None = None,
        session_events: Sequence[tuple[str, str]] = (),
        include_categories: Sequence[str] | None = None,
        exclude_categories: Sequence[str] | None = None,
    ) -> list[RecommendedItem]:
        """The top ``k`` items for ``user_id`` after business rules, each explained.

        ``user_id`` None is a visitor not to be personalized (no consent): trending in the
        request's context, whatever ``session_events`` say (they must be empty then).
        ``session_events``: ``(item_id, event_type)`` pairs that happened since the models
        were built (this session's views and carts): they count at once, without
        retraining. Unknown items in them are ignored (they cannot be scored yet).
        """
        if not 1 <= k <= 1000:
            raise ValueError(f"k must be between 1 and 1000, got {k}")
        if user_id is None and session_events:
            raise ValueError("session_events need a user_id; None is an anonymous visitor")
        context = dict(context or {})
        user = -1 if user_id is None else self.user_row(user_id)
        found = None
        if user >= 0 and not session_events and self.candidates is not None:
            seen = _row_indices(self.history, user)
            found = self._from_candidates(user, seen, k, include_categories, exclude_categories)
        if found is not None:
            chosen, values, evidence, verb_codes = found
            reasons = self._explanations(seen, chosen, evidence, _VERB_OF_CODE[verb_codes])
        else:
            row, purchased, strongest = self._user_rows(user, session_events)
            seen = row.indices
            chosen, values, explainer = self._full_pass(
                user,
                row,
                purchased,
                k,
                context,
                bool(session_events),
                include_categories,
                exclude_categories,
            )
            reasons = self._explain(explainer, seen, chosen, _VERB_OF_CODE[strongest], context)
        # Positional: keywords cost half the time of building ten lines (fields in order:
        # item_id, score, reason, kind, source, evidence_item).
        return [
            RecommendedItem(
                str(item_id), value, reason.text, reason.kind, reason.source, reason.evidence_item
            )
            for item_id, value, reason in zip(
                self.catalog.item_ids[chosen].tolist(),
                np.asarray(values, dtype=np.float64).tolist(),
                reasons,
                strict=True,
            )
        ]

    def _full_pass(
        self,
        user: int,
        row: sp.csr_matrix,
        purchased: sp.csr_matrix,
        k: int,
        context: Mapping[str, str],
        folded: bool,
        include_categories: Sequence[str] | None,
        exclude_categories: Sequence[str] | None,
    ) -> tuple[np.ndarray, np.ndarray, Recommender]:
        """Score the whole catalog for one user, then the rules: (codes, scores, the model
        that explains them). ``folded``: the row holds session events the model has not
        learned (a known user's learned state is stale then: fold them in)."""
        n_model = self.n_model_items
        model_row = row if row.shape[1] == n_model else row[:, :n_model]
        if model_row.nnz == 0:
            scores = self._pad(self.trending.score_context(context))
            explainer: Recommender = self.trending
            if row.nnz:
                scores, _ = self._with_new_items(scores.copy(), row)
            _hide_seen(scores, row, purchased)
        else:
            scores, _ = self._pre_rule_scores(row, purchased, np.array([-1 if folded else user]))
            explainer = self.model
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
        return chosen, values[0][: len(chosen)], explainer

    def _pre_rule_scores(
        self, rows: sp.csr_matrix, purchased: sp.csr_matrix, users: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Personal scores of history ``rows`` over the catalog before the rules: the
        model's, content scores for items without interactions, seen items (but purchases)
        at -inf; and each row's best personal score. One code for requests and for the
        precomputed candidates, so both give the same answer."""
        n_model = self.n_model_items
        model_rows = rows if rows.shape[1] == n_model else rows[:, :n_model]
        scores = self._pad(self.model.score(model_rows, users))
        scores, best = self._with_new_items(scores, rows)
        _hide_seen(scores, rows, purchased)
        return scores, best

    def _from_candidates(
        self,
        user: int,
        seen: np.ndarray,
        k: int,
        include_categories: Sequence[str] | None,
        exclude_categories: Sequence[str] | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """The rules over the user's precomputed candidates: (codes, scores, the history
        item explaining each or -1, what the user did with that item as a verb code); None
        where only a full pass gives the exact answer (see :mod:`tailor.recommend.candidates`)."""
        candidates = self.candidates
        if candidates is None or self.rules.boosts or user >= len(candidates.items):
            return None
        codes, scores = candidates.of(user)
        if not len(codes):
            return None
        complete = len(codes) < candidates.depth  # every finite score is among them
        added = np.arange(candidates.n_items, len(self.catalog))
        if len(added) and self.content is not None:
            row = _row_of(self.history, user, len(self.catalog))
            similar = self._new_item_content(row, added)[0]
            best = candidates.best[user]
            keep = similar > 0
            codes = np.concatenate([codes, added[keep]])
            scores = np.concatenate(
                [scores, new_item_scores(similar[keep], best).astype(np.float32)]
            )
        purchased = self.purchased
        bought = (
            _among(codes, _row_indices(purchased, user))
            if purchased.has_sorted_indices  # scipy keeps the flag: checked once
            else np.isin(codes, _row_indices(purchased, user))
        )
        if not len(added) and removes_only_unavailable_and_bought(
            self.rules, include_categories, exclude_categories
        ):
            removed = bought if self.rules.exclude_purchased else None
            chosen = _first_allowed(codes, scores, self.catalog.eligible, removed, k)
            values = scores[None, chosen]
        else:
            ids, values = apply_rules(
                scores[None, :],
                catalog=self.catalog.take(codes),
                rules=self.rules,
                k=k,
                purchased=None if bought is None else bought[None, :],
                item_similarity=_remapped(self._similarity(), codes),
                include_categories=include_categories,
                exclude_categories=exclude_categories,
            )
            chosen = ids[0][ids[0] >= 0]
        if not complete and (len(chosen) < k or self._mmr_pool_short(len(codes), k)):
            return None
        evidence = np.full(len(chosen), -1, np.int64)
        explained = 0 if candidates.evidence is None else candidates.evidence.shape[1]
        ready = chosen < explained
        if candidates.evidence is not None:
            evidence[ready] = candidates.evidence[user, chosen[ready]]
        else:
            ready[:] = False
        if ready.all() and candidates.evidence_verbs is not None:
            verb_codes = candidates.evidence_verbs[user, chosen]
        else:  # items added since, or no evidence or verbs kept: look them up now
            evidence[~ready] = self._evidence(seen, codes[chosen[~ready]])
            verb_codes = self._verb_codes_of_user(user, evidence)
        return codes[chosen], values[0][: len(chosen)], evidence, verb_codes

    def _mmr_pool_short(self, n_candidates: int, k: int) -> bool:
        """Whether MMR would draw its pool from further down than the candidates reach."""
        return self.rules.diversity == "mmr" and n_candidates < MMR_POOL * k

    def with_candidates(
        self, depth: int = DEFAULT_DEPTH, *, progress: Callable[[int], None] | None = None
    ) -> RecommendationService:
        """A copy holding every known user's best ``depth`` items before the rules (see
        :mod:`tailor.recommend.candidates`); ``progress(n)`` after each block of users.
        Costs one scoring pass over users × items, once per model."""
        history, purchased = self.history, self.purchased

        n_model = self.n_model_items

        def pre_rule_scores(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            block = history[rows]
            scores, best = self._pre_rule_scores(block, purchased[rows], rows)
            # A row the model knows nothing of is answered by trending: no candidates.
            scores[np.diff(block[:, :n_model].indptr) == 0] = -np.inf
            return scores, best

        def evidence_of(row: int, codes: np.ndarray) -> np.ndarray:
            return self._evidence(_row_indices(history, row), codes)

        candidates = compute_top_candidates(
            pre_rule_scores,
            history.shape[0],
            len(self.catalog),
            depth=depth,
            progress=progress,
            evidence_of=None if self._explained_by_generators else evidence_of,
        )
        if candidates.evidence is not None:
            candidates = dataclasses.replace(
                candidates, evidence_verbs=_verb_codes(self.strongest, candidates.evidence)
            )
        return dataclasses.replace(self, candidates=candidates)

    def similar_items(self, item_id: str, *, k: int = 10) -> list[RecommendedItem]:
        """Items like ``item_id``: by the personal model's item similarity where it has one
        and the item has interactions, else by content (so a new item has neighbours too)."""
        if not 1 <= k <= 1000:
            raise ValueError(f"k must be between 1 and 1000, got {k}")
        code = self.item_code(item_id)
        n_model = self.n_model_items
        similarity = None
        source = self.model.name
        if code < n_model and self.model.item_popularity_[code] > 0:
            similarity = self.model.item_similarity(np.array([code]), np.arange(n_model))
            if similarity is not None:
                similarity = self._pad(np.asarray(similarity, dtype=np.float32).reshape(1, -1))
        if similarity is None and self.content is not None:
            similarity, source = (
                self.content.item_similarity(np.array([code]), np.arange(len(self.catalog))),
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

    def bought_together(self, item_id: str, *, k: int = 10) -> list[RecommendedItem]:
        """Items that customers who bought or carted ``item_id`` also bought or carted, by
        how many did (:attr:`co_purchase`). An item nobody bought with anything yet falls
        back to :meth:`similar_items`, and each reason says so."""
        if not 1 <= k <= 1000:
            raise ValueError(f"k must be between 1 and 1000, got {k}")
        code = self.item_code(item_id)
        matrix = self.co_purchase
        row = matrix[code] if matrix is not None and code < matrix.shape[0] else None
        title = self.catalog.title[code] or item_id
        if row is None or row.nnz == 0:
            return [
                dataclasses.replace(
                    line, reason=f"Not bought with anything yet; similar to {title}"
                )
                for line in self.similar_items(item_id, k=k)
            ]
        scores = np.full((1, len(self.catalog)), -np.inf, dtype=np.float32)
        scores[0, row.indices] = row.data
        scores[0, code] = -np.inf
        ids, values = apply_rules(scores, catalog=self.catalog, rules=self.rules, k=k)
        return [
            RecommendedItem(
                item_id=str(self.catalog.item_ids[item]),
                score=float(value),
                reason=f"Often bought with {title}",
                kind="often_bought_with",
                source="co_purchase",
                evidence_item=item_id,
            )
            for item, value in zip(ids[0], values[0], strict=True)
            if item >= 0
        ]

    # --- ids -------------------------------------------------------------------------------

    @property
    def n_model_items(self) -> int:
        """Item columns the personal model knows (the catalog may have grown since)."""
        return int(self.model.n_items_)

    def user_row(self, user_id: str) -> int:
        """``user_id``'s row in the history matrices and the model's user state; -1 for a
        user the service does not know (or no longer knows, after erasure)."""
        return self._user_lookup().rows.get(user_id, -1)

    def _user_lookup(self) -> UserLookup:
        lookup = self.user_lookup
        if lookup is None or not lookup.built_from(self.user_ids, self.user_rows):
            lookup = self.user_lookup = UserLookup.of(self.user_ids, self.user_rows)
        return lookup

    def warm(self) -> RecommendationService:
        """Build the lookups requests use now (the user index, the eligibility mask), so no
        request pays for them; the serving state calls it before it swaps a service in."""
        self._user_lookup()
        _ = self.catalog.eligible
        return self

    def item_code(self, item_id: str) -> int:
        """The catalog code of ``item_id`` (KeyError naming it when the catalog lacks it)."""
        code = int(self.item_codes([item_id])[0])
        if code < 0:
            raise KeyError(f"item {item_id!r} is not in the catalog")
        return code

    def item_codes(self, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Catalog codes of ids, -1 where absent: a binary search on an order computed
        once per service (not per request)."""
        keys = self.catalog.item_ids
        wanted = np.asarray(item_ids, dtype=object)
        out = np.full(len(wanted), -1, np.int64)
        if not len(keys) or not len(wanted):
            return out
        order = self._item_order
        position = np.minimum(np.searchsorted(keys, wanted, sorter=order), len(keys) - 1)
        candidate = order[position]
        hit = keys[candidate] == wanted
        out[hit] = candidate[hit]
        return out

    @cached_property
    def _item_order(self) -> np.ndarray:
        return np.argsort(self.catalog.item_ids, kind="stable")

    # --- changes (each returns a new service; the caller swaps the reference) ---------------

    def without_user(self, user_id: str) -> RecommendationService:
        """A copy that no longer knows ``user_id`` (erasure); see :meth:`without_users`."""
        return self.without_users([user_id])

    def without_users(self, user_ids: Iterable[str]) -> RecommendationService:
        """A copy that no longer knows ``user_ids`` (erasure): their rows of the history
        matrices and their per-user model state are zeroed, their co-purchases subtracted,
        and they leave ``user_ids``, so they get cold-start answers from then on. The item
        aggregates of the trending model keep their (anonymous) share. Ids the service does
        not know are ignored; many users cost one copy of each array, not one per user."""
        lookup = self._user_lookup()
        gone = sorted({u for u in user_ids if u in lookup.rows})
        if not gone:
            return self
        rows = np.array([lookup.rows[u] for u in gone], np.int64)
        positions = np.searchsorted(self.user_ids, np.array(gone, dtype=self.user_ids.dtype))
        co_purchase = self.co_purchase
        if co_purchase is not None:
            bought = self.strongest[rows]
            bought = sp.csr_matrix(
                ((bought.data >= _CART).astype(np.float32), bought.indices, bought.indptr),
                shape=bought.shape,
            )
            bought.eliminate_zeros()
            if bought.nnz:
                # Each erased buyer added one to every pair of their basket (build's XᵀX).
                co_purchase = sp.csr_matrix(co_purchase - bought.T @ bought)
                co_purchase.setdiag(0)
                co_purchase.eliminate_zeros()
        if self.candidates is not None:
            for row in rows[rows < len(self.candidates.items)]:
                self.candidates.forget(int(row))
        # A blend or hybrid keeps its generators' per-user state inside it: erase that too.
        inner = getattr(self.model, "models_", None)
        for model in (self.model, *(inner.values() if isinstance(inner, dict) else ())):
            for name in _USER_STATE:
                state = getattr(model, name, None)
                if isinstance(state, np.ndarray):
                    state = state.copy()
                    state[rows[rows < len(state)]] = 0
                    setattr(model, name, state)
        user_ids = np.delete(self.user_ids, positions)
        all_rows = self.user_rows if self.user_rows is not None else np.arange(len(self.user_ids))
        user_rows = np.delete(all_rows, positions)
        return dataclasses.replace(
            self,
            user_ids=user_ids,
            user_rows=user_rows,
            user_lookup=lookup.without(gone, user_ids, user_rows),
            history=_zero_rows(self.history, rows),
            purchased=_zero_rows(self.purchased, rows),
            strongest=_zero_rows(self.strongest, rows),
            co_purchase=co_purchase,
        )

    def with_items(self, rows: pa.Table) -> RecommendationService:
        """A copy with catalog rows inserted or updated (the columns of ``rows`` only).

        Availability and listing flags take effect at once; items new to the catalog are
        appended and become recommendable through content similarity: the content model
        re-encodes the new and changed items with its fitted vocabulary (words, categories
        and brands it never saw count from the next build).
        """
        if "item_id" not in rows.column_names:
            raise ValueError("item rows need an item_id column")
        if not rows.num_rows:
            return self
        ids = rows["item_id"].to_numpy(zero_copy_only=False).astype(object)
        # The last row of a repeated id wins, as in the store.
        _, last = np.unique(ids[::-1], return_index=True)
        keep = np.sort(len(ids) - 1 - last)
        rows, ids = rows.take(pa.array(keep)), ids[keep]
        update = Catalog.from_table(rows, ids)
        codes = self.item_codes(ids)
        new = codes < 0
        old = self.catalog
        n_old = len(old)
        grown = {
            name: np.concatenate([getattr(old, name), getattr(update, name)[new]])
            for name in _CATALOG_ARRAYS
        }
        catalog = Catalog(**grown)
        codes[new] = n_old + np.arange(int(new.sum()))
        given = set(rows.column_names)
        for name in _CATALOG_ARRAYS:
            if name in given and name != "item_id":
                getattr(catalog, name)[codes[~new]] = getattr(update, name)[~new]
        catalog.described[codes] = True
        n_items = len(catalog)
        history, purchased, strongest = (
            _widen(m, m.shape[0], n_items) for m in (self.history, self.purchased, self.strongest)
        )
        co_purchase = (
            None if self.co_purchase is None else _widen(self.co_purchase, n_items, n_items)
        )
        content = self.content
        text_changed = bool(given & {"title", "description", "category", "brand", "price"})
        if catalog.described.any() and (new.any() or text_changed):
            changed = codes if text_changed else codes[new]
            if self.content is not None and self.content.keeps_vocabulary:
                # Re-encode only the items touched: a refit over 100,000 items took 2 s
                # and held every other catalog change (a sold-out item) behind it.
                content = self.content.with_items(catalog, changed)
            else:  # no content model yet, or one saved before it kept its vocabulary
                params = self.content.get_params() if self.content is not None else {}
                fit_rows = (
                    history if history.nnz else sp.csr_matrix(np.ones((1, n_items), np.float32))
                )
                content = ContentSimilarity(**params).fit(fit_rows, catalog=catalog)
        return dataclasses.replace(
            self,
            catalog=catalog,
            history=history,
            purchased=purchased,
            strongest=strongest,
            co_purchase=co_purchase,
            content=content,
        )

    # --- persistence -----------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the service to the folder ``path``: ``service.json`` (format, version,
        model, rules, weights, a SHA-256 per file) and ``.npz`` files (the models through
        their own :meth:`Recommender.to_bytes`, the arrays through :func:`numpy.savez`).
        No pickle: loading runs no code. ``service.json`` is written last, so a reader that
        watches it sees a complete artifact (and the digests catch a half-written one)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        blobs: dict[str, bytes] = {
            "model.npz": self.model.to_bytes(),
            "trending.npz": self.trending.to_bytes(),
            "arrays.npz": self._arrays_bytes(),
        }
        if self.content is not None:
            blobs["content.npz"] = self.content.to_bytes()
        if self.candidates is not None:
            buffer = io.BytesIO()
            np.savez(buffer, **self.candidates.to_arrays())
            blobs["candidates.npz"] = buffer.getvalue()
        for name, blob in blobs.items():
            (path / name).write_bytes(blob)
        header = {
            "kind": SERVICE_KIND,
            "format": SERVICE_FORMAT,
            "info": self.info | {"version": self.version},
            "rules": self.rules.to_dict(),
            "weights": dataclasses.asdict(self.weights),
            "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()},
        }
        replace_text(path / "service.json", json.dumps(header, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RecommendationService:
        """Read a folder written by :meth:`save` (ValueError saying what is wrong)."""
        path = Path(path)
        header_path = path / "service.json"
        if not header_path.is_file():
            raise ValueError(
                f"{path}: no service.json (write one with `tailor serve --save-model`)"
            )
        try:
            header = json.loads(header_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{header_path}: not a readable service header ({exc})") from exc
        if header.get("kind") != SERVICE_KIND or header.get("format") != SERVICE_FORMAT:
            raise ValueError(
                f"{header_path}: not a tailor recommendation service of format {SERVICE_FORMAT}"
            )
        blobs = {}
        for name, digest in header["files"].items():
            blob = (path / name).read_bytes()
            if hashlib.sha256(blob).hexdigest() != digest:
                raise ValueError(f"{path / name}: checksum mismatch (corrupt or being rewritten)")
            blobs[name] = blob
        with np.load(io.BytesIO(blobs["arrays.npz"]), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        catalog = Catalog(
            **{
                name: arrays[f"catalog_{name}"].astype(object)
                if arrays[f"catalog_{name}"].dtype.kind == "U"
                else arrays[f"catalog_{name}"]
                for name in _CATALOG_ARRAYS
            }
        )
        trending = load_model(blobs["trending.npz"])
        content = load_model(blobs["content.npz"]) if "content.npz" in blobs else None
        if not isinstance(trending, Trending) or not (
            content is None or isinstance(content, ContentSimilarity)
        ):
            raise ValueError(f"{path}: trending.npz or content.npz holds the wrong model")
        service = cls(
            model=load_model(blobs["model.npz"]),
            catalog=catalog,
            user_ids=arrays["user_ids"].astype(object),
            history=_sparse(arrays, "history"),
            purchased=_sparse(arrays, "purchased"),
            strongest=_sparse(arrays, "strongest"),
            trending=trending,
            content=content,
            rules=BusinessRules.from_dict(header["rules"]),
            weights=EventWeights(**header["weights"]),
            user_rows=arrays["user_rows"],
            info=dict(header.get("info") or {}),
        )
        service.co_purchase = co_purchases(service.strongest, len(catalog))
        if "candidates.npz" in blobs:
            with np.load(io.BytesIO(blobs["candidates.npz"]), allow_pickle=False) as data:
                service.candidates = TopCandidates.from_arrays({n: data[n] for n in data.files})
            if service.candidates.items.shape[0] != service.history.shape[0]:
                raise ValueError(f"{path}: candidates.npz does not match the users' rows")
            verbs = service.candidates.evidence_verbs
            if (
                verbs is not None
                and verbs.size
                and (
                    verbs.dtype.kind not in "iu"
                    or verbs.min() < 0
                    or verbs.max() >= len(_VERB_OF_CODE)
                )
            ):
                raise ValueError(f"{path}: candidates.npz holds verb codes tailor does not know")
        return service

    def _arrays_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "user_ids": np.asarray(self.user_ids, dtype=str),
            "user_rows": (
                np.arange(len(self.user_ids))
                if self.user_rows is None
                else np.asarray(self.user_rows, np.int64)
            ),
        }
        for name in _CATALOG_ARRAYS:
            value = getattr(self.catalog, name)
            arrays[f"catalog_{name}"] = (
                np.asarray(value, dtype=str) if value.dtype == object else value
            )
        for name in ("history", "purchased", "strongest"):
            matrix = sp.csr_matrix(getattr(self, name))
            arrays[f"{name}_data"] = matrix.data
            arrays[f"{name}_indices"] = matrix.indices
            arrays[f"{name}_indptr"] = matrix.indptr
            arrays[f"{name}_shape"] = np.asarray(matrix.shape)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    # --- internals -------------------------------------------------------------------------

    def _pad(self, scores: np.ndarray) -> np.ndarray:
        """Model scores over the model's items, widened to the catalog with -inf (items
        added since are scored by content only)."""
        scores = np.asarray(scores, dtype=np.float32)
        extra = len(self.catalog) - scores.shape[1]
        if extra <= 0:
            return scores
        return np.hstack([scores, np.full((scores.shape[0], extra), -np.inf, np.float32)])

    def _popularity(self) -> np.ndarray:
        popularity = np.asarray(self.model.item_popularity_, dtype=np.float32)
        extra = len(self.catalog) - len(popularity)
        return (
            popularity if extra <= 0 else np.concatenate([popularity, np.zeros(extra, np.float32)])
        )

    def _user_rows(
        self, user: int, session_events: Sequence[tuple[str, str]]
    ) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
        """The user's history, purchases (1 × catalog, sorted indices) and the strongest
        event-type code per history item, with ``session_events`` added."""
        n_items = len(self.catalog)
        row, purchased, strength = (
            _row_of(m, user, n_items) for m in (self.history, self.purchased, self.strongest)
        )
        if session_events:
            item_ids, kinds = zip(*session_events, strict=True)
            unknown_kinds = set(kinds) - set(INTERACTION_TYPES)
            if unknown_kinds:
                raise ValueError(
                    f"session event types must be among {', '.join(INTERACTION_TYPES)}; "
                    f"got {', '.join(sorted(unknown_kinds))}"
                )
            codes = self.item_codes(list(item_ids))
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
            # The strongest kind per item: a COO matrix would sum the ranks of an item met
            # twice (a click and a purchase), past the last kind.
            rank: dict[int, int] = {}
            for code, kind in zip(codes.tolist(), kinds_arr, strict=True):
                rank[code] = max(rank.get(code, 0), INTERACTION_TYPES.index(kind) + 1)
            ranked = np.fromiter(rank, np.int64, len(rank))
            strength = strength.maximum(
                sp.csr_matrix(
                    (np.fromiter(rank.values(), np.float32, len(rank)),
                     (np.zeros(len(rank), np.int64), ranked)),
                    shape=(1, n_items),
                )
            )  # fmt: skip
            # New matrices (the stored rows are views and must stay untouched).
            row, purchased, strength = (sp.csr_matrix(m) for m in (row, purchased, strength))
            for matrix in (row, purchased, strength):
                matrix.eliminate_zeros()
                matrix.sort_indices()
        return row, purchased, _strongest_codes(row.indices, strength.indices, strength.data)

    @property
    def _explained_by_generators(self) -> bool:
        """Whether the personal model explains generator by generator (a hybrid; see
        :attr:`Recommender.explained_by_generators`): then there is no one evidence per item
        to keep with the candidates."""
        return self.model.explained_by_generators

    def _evidence(self, seen: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """The history item (a code; -1: none) that speaks most for each of ``codes`` by the
        personal model's own item links (a blend's are its anchor's), or, for items without
        interactions, by content. What :meth:`_explanations` words; the candidates keep it
        precomputed."""
        out = np.full(len(codes), -1, np.int64)
        if not len(seen) or not len(codes):
            return out
        new = self._new_items[codes] & (self.content is not None)
        by_model = (codes < self.n_model_items) & ~new
        known = seen[seen < self.n_model_items]
        for mask, model, history in ((by_model, self.model, known), (new, self.content, seen)):
            if mask.any() and len(history):
                strongest = strongest_links(model, history, codes[mask])
                if strongest is not None:
                    out[mask] = np.where(strongest >= 0, history[strongest], -1)
        return out

    def _explanations(
        self, seen: np.ndarray, chosen: np.ndarray, evidence: np.ndarray, verbs: np.ndarray
    ) -> list[Explanation]:
        """The personal model's reasons for ``chosen`` from their ``evidence`` (see
        :meth:`_evidence`) and the ``verbs`` of that evidence: "Because you viewed ...",
        "Similar to ... you bought"."""
        model = self.model.name
        new = self._new_items[chosen] & (self.content is not None) & (len(seen) > 0)
        kinds = {False: similarity_kind(self.model, model, False), True: "similar_content"}
        sources = {False: model, True: "content"}
        reasons = self.reasons
        out = []
        for code, item_is_new, verb in zip(
            evidence.tolist(), new.tolist(), verbs.tolist(), strict=True
        ):
            key = (code, item_is_new, verb)
            reason = reasons.get(key)
            if reason is None:
                source = sources[item_is_new]
                if code < 0:
                    reason = Explanation("popular", "Popular right now", None, source)
                else:
                    reason = because(kinds[item_is_new], source, code, self.catalog, verb)
                if len(reasons) >= MAX_KEPT_REASONS:
                    reasons.clear()
                reasons[key] = reason
            out.append(reason)
        return out

    def _verb_codes_of_user(self, user: int, evidence: np.ndarray) -> np.ndarray:
        """What a known user did with each ``evidence`` item, coded (see
        :data:`_VERB_OF_CODE`: "viewed", "bought"), read straight from their row of the
        strongest matrix (the candidates' path)."""
        strength = self.strongest
        start, stop = strength.indptr[user], strength.indptr[user + 1]
        return _strongest_codes(evidence, strength.indices[start:stop], strength.data[start:stop])

    def _with_new_items(
        self, scores: np.ndarray, rows: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray]:
        """Give items nobody has touched a content score next to the personal ones, on the
        scale of each row's best personal score; (scores, those best scores). Changes
        ``scores`` in place (NaN-free: -inf marks what never shows)."""
        new = self._new_items
        by_content = self.content is not None and bool(new.any())
        if by_content:
            scores[:, new] = -np.inf  # (a max with where= is ten times slower than this)
        top = scores.max(axis=1, initial=-np.inf)
        best = np.where(np.isfinite(top), top, 1.0).astype(np.float32)
        if not by_content:
            return scores, best
        similar = self._new_item_content(rows, np.flatnonzero(new))
        scores[:, new] = np.where(similar > 0, new_item_scores(similar, best[:, None]), -np.inf)
        return scores, best

    @cached_property
    def _new_items(self) -> np.ndarray:
        """Catalog mask of the items without interactions (scored by content)."""
        return self._popularity() == 0

    def _new_item_content(self, rows: sp.csr_matrix, codes: np.ndarray) -> np.ndarray:
        """``self.content.score(rows)[:, codes]``, computed over ``codes`` only (scoring the
        whole catalog cost ~10 ms a request at 100,000 items). The content profile is the
        L1-normalized history times the item features, as in
        :meth:`ContentSimilarity.score`."""
        rows = sp.csr_matrix(rows, dtype=np.float32)
        totals = np.asarray(abs(rows).sum(axis=1), dtype=np.float32).ravel()
        scale = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
        profile = (sp.diags(scale) @ rows @ self.content.item_features_).toarray()
        # Sparse items × features times the dense profiles: no sparse × sparse product.
        return np.asarray(self._features_of(codes) @ profile.T, dtype=np.float32).T

    def _features_of(self, codes: np.ndarray) -> sp.csr_matrix:
        """The content features of ``codes`` (items × features), kept per service for the
        sets requests use (the new items, the items added since the candidates)."""
        cache = self.__dict__.setdefault("_features_cache", {})
        key = (len(codes), int(codes[0]), int(codes[-1])) if len(codes) else (0, -1, -1)
        if key not in cache:
            cache[key] = sp.csr_matrix(self.content.item_features_[codes], dtype=np.float32)
        return cache[key]

    def _similarity(self):
        if self.rules.diversity != "mmr":
            return None
        if self.content is not None:
            return self.content.item_similarity
        if len(self.catalog) > self.n_model_items:
            return None  # the model cannot relate items added since; MMR uses categories
        return self.model.item_similarity

    def _explain(
        self,
        explainer: Recommender,
        seen: np.ndarray,
        chosen: np.ndarray,
        verbs: np.ndarray,
        context: Mapping[str, str],
    ) -> list[Explanation]:
        if not len(chosen):
            return []
        if explainer is self.model and not self._explained_by_generators:
            evidence = self._evidence(seen, chosen)
            return self._explanations(seen, chosen, evidence, _verbs_of(seen, verbs, evidence))
        out = [Explanation("popular", "Popular right now", None, explainer.name)] * len(chosen)
        # Items without interactions are explained by content where it can; the models know
        # only their own items: explain those with them.
        new = self._new_items[chosen]
        by_content = self.content is not None and len(seen) > 0
        n_model = self.n_model_items
        old, known = (chosen < n_model) & ~(new & by_content), seen < n_model
        if old.any():
            reasons = explain(
                explainer,
                seen[known],
                chosen[old],
                self.catalog,
                verbs=verbs[known],
                context=context,
            )
            for slot, reason in zip(np.flatnonzero(old), reasons, strict=True):
                out[slot] = reason
        if new.any() and by_content:
            by_content = explain(
                self.content, seen, chosen[new], self.catalog, verbs=verbs, context=context
            )
            for slot, reason in zip(np.flatnonzero(new), by_content, strict=True):
                out[slot] = reason
        return out


MAX_KEPT_REASONS = 200_000
"""Worded explanations a service keeps (:attr:`RecommendationService.reasons`), a few MB."""
SERVICE_KIND = "tailor.recommendation_service"
SERVICE_FORMAT = 1
_CART = float(INTERACTION_TYPES.index("add_to_cart") + 1)
"""The strongest-event code of a cart; purchases are above it (co-purchase counts both)."""
_USER_STATE = ("user_factors_",)
"""Per-user learned state of the models (rows = training users), zeroed on erasure."""
_CATALOG_ARRAYS = tuple(f.name for f in dataclasses.fields(Catalog))
_VERB_OF_CODE = np.array(
    ["interacted with", *(EVENT_VERBS.get(kind, "interacted with") for kind in INTERACTION_TYPES)],
    dtype=object,
)
"""The verb of each strongest-event code (0: none known, 1: the first interaction type)."""


def co_purchases(strongest: sp.csr_matrix, n_items: int | None = None) -> sp.csr_matrix:
    """Items × items: how many users bought or carted both items (diagonal zero).

    ``strongest`` holds each user's strongest event type code per item (see
    :func:`_event_matrices`); carts count with purchases because a basket is evidence of
    buying together too.
    """
    # A copy: eliminate_zeros works in place on the index arrays, which must stay intact.
    bought = sp.csr_matrix(strongest, dtype=np.float32, copy=True)
    bought.data = (bought.data >= _CART).astype(np.float32)
    bought.eliminate_zeros()
    together = sp.csr_matrix(bought.T @ bought, dtype=np.float32)
    together.setdiag(0)
    together.eliminate_zeros()
    n = n_items or together.shape[0]
    return _widen(together, n, n)


def _widen(matrix: sp.csr_matrix, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """``matrix`` with empty rows and columns appended up to the given shape (no copy of
    the stored values)."""
    matrix = sp.csr_matrix(matrix)
    if matrix.shape == (n_rows, n_cols):
        return matrix
    extra = n_rows - matrix.shape[0]
    indptr = matrix.indptr
    if extra > 0:
        indptr = np.concatenate([indptr, np.full(extra, indptr[-1], indptr.dtype)])
    return sp.csr_matrix((matrix.data, matrix.indices, indptr), shape=(n_rows, n_cols))


def _row_of(matrix: sp.csr_matrix, user: int, n_items: int) -> sp.csr_matrix:
    """Row ``user`` of a CSR matrix as 1 × ``n_items``, sharing its arrays (no scipy
    indexing: ~20 times faster per request); empty for -1. Never modify it in place."""
    if user < 0:
        return sp.csr_matrix((1, n_items), dtype=matrix.dtype)
    start, stop = matrix.indptr[user], matrix.indptr[user + 1]
    return sp.csr_matrix(
        (matrix.data[start:stop], matrix.indices[start:stop], np.array([0, stop - start])),
        shape=(1, n_items),
    )


def _verbs_of(seen: np.ndarray, verbs: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    """The verb of each ``evidence`` code (a history item) from ``verbs``, aligned with
    ``seen``; any verb where the evidence is -1 (nothing is said then)."""
    if not len(seen):
        return np.full(len(evidence), "", dtype=object)
    # A model's history rows are sorted; a request's own row may not be.
    at, found = _find_sorted(seen, evidence)
    if not (found | (evidence < 0)).all():
        order = np.argsort(seen, kind="stable")
        at, found = _find_sorted(seen[order], evidence)
        assert found[evidence >= 0].all(), "evidence outside the history"
        at = order[at]
    return verbs[at]


def _row_indices(matrix: sp.csr_matrix, row: int) -> np.ndarray:
    return matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]]


def _find_sorted(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``wanted``: its position in the sorted, non-empty ``keys`` (clipped to the
    last one when absent) and whether it is there."""
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return at, keys[at] == wanted


def _among(codes: np.ndarray, sorted_codes: np.ndarray) -> np.ndarray | None:
    """Which of ``codes`` are in ``sorted_codes``; None when that is none (nothing to do)."""
    return _find_sorted(sorted_codes, codes)[1] if len(sorted_codes) else None


def _strongest_codes(seen: np.ndarray, indices: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The strongest event-type code (at least 1, a view) of each of ``seen``, from one row
    of the strongest matrix (``indices`` sorted, ``codes`` aligned)."""
    if not len(indices):
        return np.ones(len(seen), np.int64)
    at, found = _find_sorted(indices, seen)
    return np.maximum(np.where(found, codes[at], 0).astype(np.int64), 1)


def _verb_codes(strongest: sp.csr_matrix, evidence: np.ndarray) -> np.ndarray:
    """:meth:`RecommendationService._verb_codes_of_user` for every row of ``evidence`` (users
    × candidates, -1: none) at once, as int8: what the candidates keep. The same lookup, over
    each cell of ``strongest`` keyed as one number (row-major, so the keys are sorted)."""
    n_rows, width = evidence.shape
    n_cols = np.int64(strongest.shape[1])
    strength = strongest if strongest.has_sorted_indices else strongest.sorted_indices()
    nnz_rows = np.repeat(np.arange(strength.shape[0], dtype=np.int64), np.diff(strength.indptr))
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), width).reshape(n_rows, width)
    codes = np.ones(evidence.shape, np.int8)
    valid = evidence >= 0
    codes[valid] = _strongest_codes(
        rows[valid] * n_cols + evidence[valid], nnz_rows * n_cols + strength.indices, strength.data
    )
    return codes


def _hide_seen(scores: np.ndarray, rows: sp.csr_matrix, purchased: sp.csr_matrix) -> None:
    """Items a row met are not shown again (-inf), except purchases: the rules judge those
    (consumables may come back)."""
    seen = sp.coo_matrix(rows)
    if not seen.nnz:
        return
    bought = sp.coo_matrix(purchased)
    kept = scores[bought.row, bought.col]
    scores[seen.row, seen.col] = -np.inf
    scores[bought.row, bought.col] = kept


def _first_allowed(
    codes: np.ndarray,
    scores: np.ndarray,
    eligible: np.ndarray,
    bought: np.ndarray | None,
    k: int,
) -> np.ndarray:
    """Positions of the first ``k`` of best-first candidates that are eligible, scored and
    not bought: :func:`~tailor.recommend.rules.apply_rules`' answer when its rules only
    remove items (it sorts a row of up to 512 candidates stably, so ties keep the
    candidates' order), without its generic passes over every candidate (a third of a cache
    miss's time)."""
    allowed = eligible[codes] & np.isfinite(scores)
    if bought is not None:
        allowed &= ~bought
    return np.flatnonzero(allowed)[:k]


def _remapped(similarity, codes: np.ndarray):
    """An item similarity over positions in ``codes`` (MMR over the candidates)."""
    if similarity is None:
        return None
    return lambda sources, targets: similarity(codes[sources], codes[targets])


def _zero_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """A copy of ``matrix`` with ``rows`` emptied."""
    matrix = sp.csr_matrix(matrix, copy=True)
    emptied = np.zeros(matrix.shape[0], bool)
    emptied[rows] = True
    matrix.data[np.repeat(emptied, np.diff(matrix.indptr))] = 0
    matrix.eliminate_zeros()
    return matrix


def _sparse(arrays: Mapping[str, np.ndarray], name: str) -> sp.csr_matrix:
    shape = tuple(int(n) for n in arrays[f"{name}_shape"])
    return sp.csr_matrix(
        (arrays[f"{name}_data"], arrays[f"{name}_indices"], arrays[f"{name}_indptr"]),
        shape=shape,
    )


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


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
