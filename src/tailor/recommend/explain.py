"""Why an item was recommended, in words a person understands, from the model that chose it.

An explanation is only honest when it comes from what produced the item, so:

- an item-based model (one whose ``item_similarity`` returns an array: ItemKNN, EASE, ALS,
  BPR, content similarity) names the history item that speaks most for the recommendation:
  "Because you viewed <title>", "Often bought with <title>" (when the caller says the
  similarity comes from co-purchases), "Similar to <title> you viewed" (content);
- a trending model names the request context where the item is notably more popular:
  "Popular in DE this week" (``best_context``);
- anything else, or a user without history, gets "Popular right now";
- a hybrid explains each item with the candidate model that ranked it best; a blend, whose
  score is its models' scores added, by its own item links (its anchor's), as one model.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from tailor.recommend.base import item_codes

if TYPE_CHECKING:
    from tailor.recommend.catalog import Catalog

EVENT_VERBS: dict[str, str] = {
    "view": "viewed",
    "click": "clicked on",
    "add_to_cart": "added to cart",
    "purchase": "bought",
    "rating": "rated",
}
"""The verb for a history item's strongest event type, for the caller's ``verbs`` array."""
DEFAULT_VERB = "interacted with"
KINDS = ("because_you", "often_bought_with", "similar_content", "popular_in", "popular")
_CONTENT_MODELS = frozenset({"content"})


@dataclass(frozen=True)
class Explanation:
    """One recommended item's explanation.

    Attributes
    ----------
    kind : one of :data:`KINDS`.
    text : the sentence shown to the user.
    evidence_item : the id of the history item the explanation names, if any.
    source : the name of the model that produced the item (for a hybrid, its generator's).
    """

    kind: str
    text: str
    evidence_item: str | None
    source: str


def explain(
    model: Any,
    history_items: np.ndarray,
    recommended: np.ndarray,
    catalog: Catalog,
    *,
    verbs: Sequence[str] | np.ndarray | None = None,
    context: Mapping[str, Any] | None = None,
    bought_together: bool | Collection[str] = False,
) -> list[Explanation]:
    """Explain one user's recommendations, one :class:`Explanation` per recommended item.

    Parameters
    ----------
    model : the fitted model that produced ``recommended`` (any :class:`Recommender`).
    history_items : the user's history as item codes.
    recommended : the recommended item codes (drop the -1 padding first).
    catalog : item attributes aligned with the codes; titles come from it (the item id where
        there is no title).
    verbs : per history item, how the user met it ("viewed", "bought": see
        :data:`EVENT_VERBS`); default "interacted with".
    context : the request context (country, device_type, channel) for trending models.
    bought_together : True when the model's item similarity comes from co-purchases (a model
        fitted on purchases only), or the names of such models among a hybrid's generators.
    """
    n_items = len(catalog)
    history = item_codes(history_items, n_items, "history_items")
    items = item_codes(recommended, n_items, "recommended")
    if verbs is None:
        verbs = np.full(len(history), DEFAULT_VERB, dtype=object)
    verbs = np.asarray(verbs, dtype=object)
    if verbs.shape != history.shape:
        raise ValueError(
            f"verbs must give one verb per history item: {len(history)} items, {verbs.size} verbs"
        )
    generators = getattr(model, "models_", None)
    by_generator = getattr(model, "explained_by_generators", False)
    if not by_generator or not isinstance(generators, dict) or not generators:
        return _explain_with(
            model, _name(model), history, items, catalog, verbs, context, bought_together
        )
    names = list(generators)
    chosen = _best_generator([generators[n] for n in names], history, items, n_items, context)
    out: list[Explanation | None] = [None] * len(items)
    for index, name in enumerate(names):
        mine = np.flatnonzero(chosen == index)
        if not mine.size:
            continue
        answers = _explain_with(
            generators[name], name, history, items[mine], catalog, verbs, context, bought_together
        )
        for position, answer in zip(mine, answers, strict=True):
            out[position] = answer
    return [answer for answer in out if answer is not None]


def _explain_with(
    model: Any,
    source: str,
    history: np.ndarray,
    items: np.ndarray,
    catalog: Catalog,
    verbs: np.ndarray,
    context: Mapping[str, Any] | None,
    bought_together: bool | Collection[str],
) -> list[Explanation]:
    # One shared (frozen) default: the list is rebuilt per request, thousands a second.
    out = [Explanation("popular", "Popular right now", None, source)] * len(items)
    if not len(items):
        return out
    strongest = strongest_links(model, history, items)
    explained = np.zeros(len(items), dtype=bool)
    if strongest is not None:
        explained = strongest >= 0
        kind = similarity_kind(model, source, bought_together)
        for j in np.flatnonzero(explained):
            position = strongest[j]
            out[j] = because(kind, source, history[position], catalog, str(verbs[position]))
    best_context = getattr(model, "best_context", None)
    rest = np.flatnonzero(~explained)
    if callable(best_context) and context and rest.size:
        for j, answer in zip(rest, best_context(items[rest], context), strict=True):
            if answer is not None:
                out[j] = Explanation(
                    "popular_in", f"Popular in {answer[1]} this week", None, source
                )
    return out


def _best_generator(
    models: list[Any],
    history: np.ndarray,
    items: np.ndarray,
    n_items: int,
    context: Mapping[str, Any] | None,
) -> np.ndarray:
    """Index of the model that ranks each item highest among unseen items (first on ties)."""
    row = sp.csr_matrix(
        (np.ones(len(history), np.float32), (np.zeros(len(history), np.int64), history)),
        shape=(1, n_items),
    )
    ranks = np.empty((len(models), len(items)), dtype=np.int64)
    for index, model in enumerate(models):
        by_context = getattr(model, "score_context", None)
        if context and callable(by_context):
            scores = np.asarray(by_context(context), dtype=np.float64)[0]
        else:
            scores = np.asarray(model.score(row), dtype=np.float64)[0]
        scores[history] = -np.inf  # seen items are never recommended, so they do not outrank
        ranks[index] = (scores[None, :] > scores[items][:, None]).sum(axis=1)
    return np.argmin(ranks, axis=0)


def strongest_links(model: Any, history: np.ndarray, items: np.ndarray) -> np.ndarray | None:
    """For each of ``items``, the position in ``history`` of the item that speaks most for
    it by the model's ``item_similarity`` (-1 where no link is positive: the item came from
    elsewhere in the model); None when the model does not relate items."""
    similarity = getattr(model, "item_similarity", None)
    links = similarity(history, items) if callable(similarity) and len(history) else None
    if links is None:
        return None
    links = np.asarray(links, dtype=np.float64)
    strongest = np.argmax(links, axis=0)
    strength = links[strongest, np.arange(len(items))]
    # A zero or negative link explains nothing.
    return np.where(strength > 0, strongest, -1)


def because(kind: str, source: str, evidence: int, catalog: Catalog, verb: str) -> Explanation:
    """The explanation naming history item ``evidence`` (a code), of a similarity ``kind``
    (see :func:`similarity_kind`)."""
    return Explanation(
        kind,
        _sentence(kind, _title(catalog, evidence), verb),
        str(catalog.item_ids[evidence]),
        source,
    )


def similarity_kind(model: Any, source: str, bought_together: bool | Collection[str]) -> str:
    """What an item-to-item link of this model means: similar content, bought together, or
    "because you ..." (collaborative)."""
    if _name(model) in _CONTENT_MODELS:
        return "similar_content"
    if bought_together is True or (
        not isinstance(bought_together, bool) and source in bought_together
    ):
        return "often_bought_with"
    return "because_you"


def _sentence(kind: str, title: str, verb: str) -> str:
    if kind == "often_bought_with":
        return f"Often bought with {title}"
    if kind == "similar_content":
        return f"Similar to {title} you {verb}"
    return f"Because you {verb} {title}"


def _title(catalog: Catalog, code: int) -> str:
    title = str(catalog.title[code] or "").strip()
    return title or str(catalog.item_ids[code])


def _name(model: Any) -> str:
    return str(getattr(model, "name", type(model).__name__))
