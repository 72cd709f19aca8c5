"""Content-based similarity: items are alike when their text and attributes are.

Each item becomes a sparse vector of four blocks: TF-IDF of title and description (Salton and
Buckley, "Term-weighting approaches in automatic text retrieval", 1988, with sublinear tf
1 + log tf), the category path as one token per prefix level ("Home", "Home > Kitchen"), the
brand as one token and the price band (quantile of the known prices) as one token. Every block
is L2-normalised and scaled by its weight w_b, and the row is L2-normalised again, so for two
items that have every block the cosine is Σ_b w_b² cos_b / Σ_b w_b².

A user's score for item j is the mean similarity of j to the user's history, weighted by
confidence: s = (h / Σh) F Fᵀ, computed as ((h / Σh) F) Fᵀ so the items × items matrix never
exists. Items nobody interacted with yet score like any other, which is what collaborative
models cannot do.

The fitted vocabulary, IDF weights, category and brand tokens and price bands are kept, so a
catalog change re-encodes only the items it touches (:meth:`ContentSimilarity.with_items`)
instead of refitting over the whole catalog: words, categories and brands the fit never saw
count from the next fit.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from tailor.events.columns import ITEM_CATEGORY_SEPARATOR
from tailor.recommend.base import Recommender, dense_rows, excluded_mask, item_codes, top_k

if TYPE_CHECKING:
    from tailor.recommend.catalog import Catalog
    from tailor.recommend.interactions import InteractionLog

_CATEGORY_MODES = ("path", "labels")
_BATCH = 2048  # source items per block in similar_items: memory is block × items
_DENSE_PAIRS = 20_000  # item pairs up to which item_similarity works on dense rows


class ContentSimilarity(Recommender):
    """Parameters
    ----------
    text_weight, category_weight, brand_weight, price_weight : weight of each block (>= 0,
        not all 0).
    price_bands : number of quantile bands of the known prices (1 puts every priced item in
        one band).
    stop_words : drop English stop words from the text.
    min_df : a word must occur in at least this many items to count.
    max_features : keep only the most frequent words (None: all).
    category_as : "path" makes one token per prefix of the category path ("Home",
        "Home > Kitchen"); "labels" one token per level, for categories that are sets of
        labels rather than a hierarchy (MovieLens genres).
    """

    name = "content"
    needs = ("catalog",)

    def __init__(
        self,
        *,
        text_weight: float = 1.0,
        category_weight: float = 1.0,
        brand_weight: float = 0.5,
        price_weight: float = 0.25,
        price_bands: int = 5,
        stop_words: bool = True,
        min_df: int = 1,
        max_features: int | None = None,
        category_as: str = "path",
    ) -> None:
        self.text_weight = text_weight
        self.category_weight = category_weight
        self.brand_weight = brand_weight
        self.price_weight = price_weight
        self.price_bands = price_bands
        self.stop_words = stop_words
        self.min_df = min_df
        self.max_features = max_features
        self.category_as = category_as

    # --- training -------------------------------------------------------------------------

    def _check_params(self) -> None:
        weights = {
            "text_weight": self.text_weight,
            "category_weight": self.category_weight,
            "brand_weight": self.brand_weight,
            "price_weight": self.price_weight,
        }
        for name, value in weights.items():
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not any(weights.values()):
            raise ValueError(f"at least one of {', '.join(weights)} must be above 0")
        if int(self.price_bands) != self.price_bands or self.price_bands < 1:
            raise ValueError(f"price_bands must be an integer >= 1, got {self.price_bands}")
        if int(self.min_df) != self.min_df or self.min_df < 1:
            raise ValueError(f"min_df must be an integer >= 1, got {self.min_df}")
        if self.max_features is not None and self.max_features < 1:
            raise ValueError(f"max_features must be >= 1 or None, got {self.max_features}")
        if self.category_as not in _CATEGORY_MODES:
            raise ValueError(f"category_as must be 'path' or 'labels', got {self.category_as!r}")

    def _fit_with(
        self,
        interactions: sp.csr_matrix,
        *,
        log: InteractionLog | None,
        catalog: Catalog | None,
    ) -> None:
        self._check_params()
        if catalog is None:  # fit() checks needs; this keeps direct callers honest
            raise ValueError("ContentSimilarity needs catalog= to fit")
        self.price_edges_ = np.empty(0)
        self.price_banded_ = False
        self.text_vocabulary_ = np.empty(0, str)
        self.text_idf_ = np.empty(0, np.float32)
        self.category_tokens_ = np.empty(0, str)
        self.brand_tokens_ = np.empty(0, str)
        blocks = [
            (self.text_weight, lambda: self._text_block(catalog)),
            (self.category_weight, lambda: self._category_block(catalog)),
            (self.brand_weight, lambda: self._brand_block(catalog)),
            (self.price_weight, lambda: self._price_block(catalog.price)),
        ]
        self.item_features_ = self._combine([(weight, build) for weight, build in blocks])

    def _combine(self, blocks: list) -> sp.csr_matrix:
        # A block of weight 0 is not built at all (no vocabulary to learn for nothing).
        parts = [weight * _normalize_rows(build()) for weight, build in blocks if weight > 0]
        return _normalize_rows(sp.hstack(parts, format="csr"))

    @property
    def keeps_vocabulary(self) -> bool:
        """Whether :meth:`encode` can work: models saved before it existed did not keep
        their vocabulary and must be refitted instead."""
        return hasattr(self, "text_idf_")

    def encode(self, catalog: Catalog, codes: np.ndarray) -> sp.csr_matrix:
        """Feature rows of the items ``codes`` of ``catalog``, with what the fit learned (the
        same rows as the fit's for items it saw unchanged)."""
        self._check_fitted()
        if not self.keeps_vocabulary:
            raise ValueError("this content model was saved before it kept its vocabulary: refit it")
        codes = np.asarray(codes, np.int64)
        return self._combine(
            [
                (self.text_weight, lambda: self._encode_text(catalog, codes)),
                (
                    self.category_weight,
                    lambda: _encode_sets(
                        self._category_tokens(catalog.category[codes]), self.category_tokens_
                    ),
                ),
                (
                    self.brand_weight,
                    lambda: _encode_sets(_brand_tokens(catalog.brand[codes]), self.brand_tokens_),
                ),
                (self.price_weight, lambda: self._encode_price(catalog.price[codes])),
            ]
        )

    def with_items(self, catalog: Catalog, codes: np.ndarray) -> ContentSimilarity:
        """A copy whose rows for ``codes`` (items changed or appended: codes past the fitted
        items) are encoded from ``catalog``; every other row stays as it is."""
        codes = np.asarray(codes, np.int64)
        n_items = len(catalog)
        rows = self.encode(catalog, codes)
        features = sp.csr_matrix(self.item_features_, copy=True)
        features.resize((n_items, features.shape[1]))
        keep = np.ones(n_items, bool)
        keep[codes] = False
        placed = sp.csr_matrix(
            (np.ones(len(codes), np.float32), (codes, np.arange(len(codes)))),
            shape=(n_items, len(codes)),
        )
        grown = copy.copy(self)  # the encoders are shared: they never change after the fit
        grown.item_features_ = sp.csr_matrix(
            sp.diags(keep.astype(np.float32)) @ features + placed @ rows
        )
        grown.n_items_ = n_items
        return grown

    def _text_block(self, catalog: Catalog) -> sp.csr_matrix:
        documents = [f"{t} {d}" for t, d in zip(catalog.title, catalog.description, strict=True)]
        vectorizer = TfidfVectorizer(
            sublinear_tf=True,
            stop_words="english" if self.stop_words else None,
            min_df=int(self.min_df),
            max_features=self.max_features,
            dtype=np.float32,
        )
        try:
            features = sp.csr_matrix(vectorizer.fit_transform(documents), dtype=np.float32)
        except ValueError as error:
            # No item has a word that survives (no text at all, or only stop words): the
            # block is empty and the other blocks carry the similarity.
            if "empty vocabulary" not in str(error):
                raise
            return sp.csr_matrix((len(documents), 0), dtype=np.float32)
        self.text_vocabulary_ = np.asarray(vectorizer.get_feature_names_out(), dtype=str)
        self.text_idf_ = vectorizer.idf_.astype(np.float32)
        return features

    def _encode_text(self, catalog: Catalog, codes: np.ndarray) -> sp.csr_matrix:
        """TF-IDF with the fitted vocabulary and IDF, as the fitted vectorizer computes it:
        sublinear tf, times IDF (the L2 norm follows in :meth:`_combine`)."""
        if not len(self.text_vocabulary_):
            return sp.csr_matrix((len(codes), 0), dtype=np.float32)
        counter = CountVectorizer(
            vocabulary={word: i for i, word in enumerate(self.text_vocabulary_.tolist())},
            stop_words="english" if self.stop_words else None,
            dtype=np.float32,
        )
        documents = [f"{catalog.title[c]} {catalog.description[c]}" for c in codes]
        counts = sp.csr_matrix(counter.transform(documents), dtype=np.float32)
        counts.data = np.log(counts.data) + 1.0
        return sp.csr_matrix(counts @ sp.diags(self.text_idf_))

    def _category_block(self, catalog: Catalog) -> sp.csr_matrix:
        block, self.category_tokens_ = _one_hot_sets(self._category_tokens(catalog.category))
        return block

    def _brand_block(self, catalog: Catalog) -> sp.csr_matrix:
        block, self.brand_tokens_ = _one_hot_sets(_brand_tokens(catalog.brand))
        return block

    def _category_tokens(self, categories: np.ndarray) -> list[list[str]]:
        tokens = []
        for path in categories:
            levels = [level.strip() for level in path.split(ITEM_CATEGORY_SEPARATOR)]
            levels = [level for level in levels if level]
            if self.category_as == "path":
                tokens.append(
                    [ITEM_CATEGORY_SEPARATOR.join(levels[: i + 1]) for i in range(len(levels))]
                )
            else:
                tokens.append(levels)
        return tokens

    def _price_block(self, price: np.ndarray) -> sp.csr_matrix:
        price = np.asarray(price, dtype=np.float64)
        known = np.isfinite(price)
        if not known.any():
            return sp.csr_matrix((len(price), 0), dtype=np.float32)
        inner = np.linspace(0.0, 1.0, int(self.price_bands) + 1)[1:-1]
        # Ties (many items at one price) can give equal edges; unique keeps bands non-empty.
        self.price_edges_ = np.unique(np.quantile(price[known], inner))
        self.price_banded_ = True
        return self._encode_price(price)

    def _encode_price(self, price: np.ndarray) -> sp.csr_matrix:
        price = np.asarray(price, dtype=np.float64)
        if not self.price_banded_:
            return sp.csr_matrix((len(price), 0), dtype=np.float32)
        known = np.isfinite(price)
        bands = np.searchsorted(self.price_edges_, price[known], side="right")
        rows = np.flatnonzero(known)
        return sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, bands)),
            shape=(len(price), len(self.price_edges_) + 1),
        )

    # --- scoring --------------------------------------------------------------------------

    def _score(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        profile = _normalize_rows(history, order=1) @ self.item_features_
        return np.asarray((profile @ self.item_features_.T).todense(), dtype=np.float32)

    def item_similarity(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Cosine similarity (len(sources) × len(targets)) of items given by code.

        An item without any text or attribute has similarity 0 to everything.
        """
        self._check_fitted()
        sources = self._codes(sources, "sources")
        targets = self._codes(targets, "targets")
        features = self.item_features_
        if len(sources) * len(targets) <= _DENSE_PAIRS:
            # A request's few pairs: dense rows cost less than scipy's indexing machinery.
            return dense_rows(features, sources) @ dense_rows(features, targets).T
        product = features[sources] @ features[targets].T
        return np.asarray(product.todense(), dtype=np.float32)

    def similar_items(
        self,
        item_codes: np.ndarray,
        k: int,
        exclude_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to each of ``item_codes``, best first.

        An item is never its own neighbour; ``exclude_items`` (codes, or a boolean mask over
        the catalog) are never returned either. Only items with a positive similarity count:
        rows with fewer are padded with -1 and -inf.

        Returns
        -------
        ids, scores : (len(item_codes) × k) arrays.
        """
        self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        codes = self._codes(item_codes, "item_codes")
        n_items = int(self.n_items_)
        blocked = excluded_mask(exclude_items, n_items)
        k = min(k, n_items)
        ids = np.empty((len(codes), k), np.int64)
        scores = np.empty((len(codes), k), np.float32)
        for start in range(0, len(codes), _BATCH):
            batch = codes[start : start + _BATCH]
            block = np.asarray(
                (self.item_features_[batch] @ self.item_features_.T).todense(), dtype=np.float32
            )
            block[block <= 0] = -np.inf
            block[:, blocked] = -np.inf
            block[np.arange(len(batch)), batch] = -np.inf
            ids[start : start + len(batch)], scores[start : start + len(batch)] = top_k(block, k)
        return ids, scores

    def _codes(self, codes: np.ndarray, what: str) -> np.ndarray:
        return item_codes(codes, int(self.n_items_), what)


def reference_scores(history: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Plain NumPy scores (dense history and features): the definition the fast path must
    match, materialising the items × items similarity."""
    totals = history.sum(axis=1, keepdims=True)
    weights = np.divide(history, totals, out=np.zeros_like(history), where=totals > 0)
    return weights @ (features @ features.T)


def _normalize_rows(matrix: sp.spmatrix, order: int = 2) -> sp.csr_matrix:
    """Rows scaled to unit L1 or L2 norm; all-zero rows stay zero."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    if order == 1:
        norms = np.asarray(abs(matrix).sum(axis=1)).ravel()
    else:
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ matrix)


def _brand_tokens(brands: np.ndarray) -> list[list[str]]:
    return [[token] if (token := b.strip().lower()) else [] for b in brands]


def _one_hot_sets(tokens: list[list[str]]) -> tuple[sp.csr_matrix, np.ndarray]:
    """One column per distinct token, 1 where a row holds it; and the tokens by column."""
    vocabulary: dict[str, int] = {}
    for row_tokens in tokens:
        for token in row_tokens:
            vocabulary.setdefault(token, len(vocabulary))
    known = np.asarray(list(vocabulary), dtype=str) if vocabulary else np.empty(0, str)
    return _encode_sets(tokens, known), known


def _encode_sets(tokens: list[list[str]], known: np.ndarray) -> sp.csr_matrix:
    """1 where a row holds a token of ``known`` (a column each); other tokens are dropped."""
    columns = {token: i for i, token in enumerate(known.tolist())}
    rows, cols = [], []
    for row, row_tokens in enumerate(tokens):
        for token in dict.fromkeys(row_tokens):  # a repeated label counts once
            column = columns.get(token)
            if column is not None:
                rows.append(row)
                cols.append(column)
    return sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(tokens), len(columns))
    )
