"""What every candidate model shares: fit on a confidence matrix, score histories, save/load."""

from __future__ import annotations

import inspect
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from tailor.recommend.catalog import Catalog
    from tailor.recommend.interactions import InteractionLog

FORMAT_VERSION = 1
_BATCH_ROWS = 2048


class Recommender:
    """Base class of the candidate models.

    Subclasses take keyword-only hyperparameters in ``__init__`` (stored as given), check them
    in :meth:`fit`, keep learned state in attributes ending in ``_`` and implement
    :meth:`_fit` and :meth:`_score`. Scores are over the whole catalog for a batch of users,
    given each user's interaction row: a user who was not in the training data (or who acted
    since) is scored from those interactions without retraining.
    """

    name: ClassVar[str] = "base"
    needs: ClassVar[tuple[str, ...]] = ()
    explained_by_generators: ClassVar[bool] = False
    """True for a model that ranks its generators' candidates (the hybrid): each item is
    explained by the generator that ranked it best. A model that adds its generators' scores
    (the blend) explains by its own ``item_similarity``, like a single model."""
    _registry: ClassVar[dict[str, type[Recommender]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Recommender._registry[cls.name] = cls

    def get_params(self) -> dict[str, Any]:
        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # --- training -------------------------------------------------------------------------

    def fit(
        self,
        interactions: sp.csr_matrix,
        *,
        log: InteractionLog | None = None,
        catalog: Catalog | None = None,
    ) -> Self:
        """Learn from a users × items confidence matrix (see :class:`InteractionLog`).

        Models that need more than the matrix name it in :attr:`needs`: ``log``, the
        interaction rows with their times (whose codes the matrix uses), or ``catalog``, the
        item attributes aligned with the matrix's columns.
        """
        given = {"log": log, "catalog": catalog}
        for need in self.needs:
            if given[need] is None:
                raise ValueError(f"{type(self).__name__} needs {need}= to fit")
        if catalog is not None and len(catalog) != interactions.shape[1]:
            raise ValueError(
                f"catalog has {len(catalog)} items; the interactions have {interactions.shape[1]}"
                " item columns (build both from the same item ids)"
            )
        if not sp.issparse(interactions) or interactions.ndim != 2:
            raise ValueError("interactions must be a 2-D scipy.sparse matrix (users × items)")
        interactions = sp.csr_matrix(interactions, dtype=np.float32)
        if interactions.nnz and (interactions.data < 0).any():
            raise ValueError("interactions must not hold negative confidence")
        if interactions.nnz == 0:
            raise ValueError("interactions are empty: nothing to learn from")
        self._fit_with(interactions, log=log, catalog=catalog)
        self.n_items_ = interactions.shape[1]
        self.item_popularity_ = distinct_users(interactions)
        return self

    def _fit_with(
        self,
        interactions: sp.csr_matrix,
        *,
        log: InteractionLog | None,
        catalog: Catalog | None,
    ) -> None:
        """Override in models that use ``log`` or ``catalog``; others implement :meth:`_fit`."""
        self._fit(interactions)

    def _fit(self, interactions: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    # --- scoring --------------------------------------------------------------------------

    def score(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """Scores (n_rows × n_items) for the users whose interaction rows ``history`` holds.

        ``users`` optionally gives each row's index in the training matrix: models with
        learned per-user state (matrix factorization) use it, and -1 marks a user it was not
        trained on (scored from the history alone); other models ignore it.
        """
        self._check_fitted()
        history = sp.csr_matrix(history, dtype=np.float32)
        users = None if users is None else np.asarray(users, dtype=np.int64)
        if history.shape[1] != self.n_items_:
            raise ValueError(
                f"history has {history.shape[1]} item columns; the model knows {self.n_items_}"
            )
        if users is not None and len(users) != history.shape[0]:
            raise ValueError("users must give one training-row index per history row")
        return np.asarray(self._score(history, users), dtype=np.float32)

    def _score(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def item_similarity(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
        """How much each of ``sources`` (item codes) speaks for each of ``targets``.

        Item-based models return a ``len(sources) × len(targets)`` array, larger meaning a
        stronger link; explanations ("Because you viewed …") and MMR diversity read it. This
        default returns None: the model does not relate items to items (popularity, hybrid).
        """
        return None

    def recommend(
        self,
        history: sp.csr_matrix,
        *,
        k: int = 10,
        users: np.ndarray | None = None,
        exclude_seen: bool = True,
        exclude_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` item indices and scores per history row, best first.

        Items of the row's own history (``exclude_seen``) and ``exclude_items`` (indices, or a
        boolean mask over the catalog) are never returned; rows with fewer eligible items are
        padded with -1 and -inf.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        history = sp.csr_matrix(history, dtype=np.float32)
        users = None if users is None else np.asarray(users, dtype=np.int64)
        blocked = excluded_mask(exclude_items, self._n_items())
        k = min(k, self._n_items())
        ids = np.empty((history.shape[0], k), np.int64)
        scores = np.empty((history.shape[0], k), np.float32)
        for start in range(0, history.shape[0], _BATCH_ROWS):
            rows = history[start : start + _BATCH_ROWS]
            batch_users = None if users is None else users[start : start + _BATCH_ROWS]
            block = self.score(rows, batch_users)
            # Cold start: a user with no events yet gets what most users took, not the
            # arbitrary order of an all-zero score row; from the first event on, it is personal.
            empty = np.diff(rows.indptr) == 0
            if empty.any() and hasattr(self, "item_popularity_"):
                block[empty] = self.item_popularity_
            block[:, blocked] = -np.inf
            if exclude_seen:
                block[
                    np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr)), rows.indices
                ] = -np.inf
            ids[start : start + len(block)], scores[start : start + len(block)] = top_k(block, k)
        return ids, scores

    def _n_items(self) -> int:
        self._check_fitted()
        return int(self.n_items_)

    # --- persistence ----------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (``.npz``): the learned arrays plus a JSON header with the model
        name, format version and hyperparameters. No pickle: loading runs no code."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            handle.write(self.to_bytes())
        return path

    def to_bytes(self) -> bytes:
        """The saved form of the model (what :meth:`save` writes)."""
        self._check_fitted()
        arrays, scalars = self._state()
        header = {
            "model": self.name,
            "format": FORMAT_VERSION,
            "params": self.get_params(),
            "state": scalars,
        }
        buffer = io.BytesIO()
        np.savez(buffer, __header__=np.asarray(json.dumps(header)), **arrays)
        return buffer.getvalue()

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-able values) of the learned state: every attribute ending in ``_``."""
        arrays: dict[str, np.ndarray] = {}
        scalars: dict[str, Any] = {}
        for key, value in vars(self).items():
            if not key.endswith("_"):
                continue
            if sp.issparse(value):
                matrix = sp.csr_matrix(value)
                for part in ("data", "indices", "indptr"):
                    arrays[f"{key}sparse_{part}"] = getattr(matrix, part)
                arrays[f"{key}sparse_shape"] = np.asarray(matrix.shape)
            elif isinstance(value, np.ndarray):
                arrays[key] = value
            else:
                scalars[key] = value
        return arrays, scalars

    def _restore(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        for key, value in scalars.items():
            setattr(self, key, value)
        sparse: dict[str, dict[str, np.ndarray]] = {}
        for key, value in arrays.items():
            if "_sparse_" in key:
                name, part = key.split("_sparse_")
                sparse.setdefault(name + "_", {})[part] = value
            else:
                setattr(self, key, value)
        for name, parts in sparse.items():
            shape = tuple(int(n) for n in parts["shape"])
            setattr(
                self,
                name,
                sp.csr_matrix((parts["data"], parts["indices"], parts["indptr"]), shape=shape),
            )

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        return load_model(path)


def make_model(name: str, params: Any = None) -> Recommender:
    """The model ``name`` with hyperparameters ``params`` (a mapping), or a ValueError that
    names the model and the settings it takes."""
    model_cls = Recommender._registry.get(name)
    if model_cls is None or name == "base":
        known = ", ".join(sorted(set(Recommender._registry) - {"base"}))
        raise ValueError(f"unknown model {name!r}; choose one of {known}")
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"{name}: its settings must be an object of hyperparameters")
    try:
        return model_cls(**(params or {}))
    except TypeError:
        takes = [
            p.name
            for p in inspect.signature(model_cls.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        raise ValueError(
            f"{name}: unknown setting(s) {', '.join(sorted(set(params or {}) - set(takes)))}; "
            f"it takes {', '.join(takes) or 'none'}"
        ) from None


COMBINED = frozenset({"blend", "hybrid"})
"""The models that combine others (a blend, a hybrid): never a generator themselves."""


def check_generators(generators: Any) -> None:
    """A ValueError unless ``generators`` names at least one single model: {name: settings}."""
    if not isinstance(generators, dict) or not generators:
        raise ValueError(
            'generators must name at least one model: {name: settings}, e.g. {"ease": '
            '{"l2": 500}, "itemknn": {}}'
        )
    unknown = [n for n in generators if n not in Recommender._registry or n in COMBINED]
    if unknown:
        raise ValueError(
            f"generators: unknown model(s) {', '.join(map(repr, unknown))} (a blend or a "
            "hybrid combines single models, not a blend or a hybrid)"
        )


def fit_models(
    configs: dict[str, dict[str, Any]] | None, interactions: sp.csr_matrix
) -> dict[str, Recommender]:
    """{model name: that model with those hyperparameters, fitted on ``interactions``} (the
    models a hybrid or a blend combines)."""
    return {
        name: make_model(name, params).fit(interactions) for name, params in (configs or {}).items()
    }


def pack_models(models: dict[str, Recommender]) -> dict[str, np.ndarray]:
    """Each of a hybrid's or blend's models as bytes inside its own ``.npz``."""
    return {
        f"generator_{name}": np.frombuffer(m.to_bytes(), np.uint8) for name, m in models.items()
    }


def unpack_models(arrays: dict[str, np.ndarray], names: Any) -> dict[str, Recommender]:
    """The models :func:`pack_models` wrote, in the order of ``names`` (the generators of the
    model's header: an ``.npz`` keeps no order a reader should rely on)."""
    return {name: load_model(arrays[f"generator_{name}"].tobytes()) for name in names}


def load_model(source: str | Path | bytes) -> Recommender:
    """Load a model written by :meth:`Recommender.save` (a path) or
    :meth:`Recommender.to_bytes`, whatever its class."""
    label = "model bytes" if isinstance(source, bytes) else str(source)
    opened = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
    with np.load(opened, allow_pickle=False) as data:
        header = json.loads(str(data["__header__"]))
        if header.get("format") != FORMAT_VERSION:
            raise ValueError(f"{label}: model format {header.get('format')} is not supported")
        model_cls = Recommender._registry.get(header["model"])
        if model_cls is None:
            raise ValueError(f"{label}: unknown model {header['model']!r}")
        model = model_cls(**header["params"])
        model._restore(header["state"], {k: data[k] for k in data.files if k != "__header__"})
    return model


def item_codes(values: np.ndarray, n_items: int, name: str = "item codes") -> np.ndarray:
    """``values`` as int64 item codes, refusing anything but a 1-D integer array of codes in
    ``[0, n_items)`` (numpy would silently wrap the -1 padding to the last item)."""
    codes = np.asarray(values)
    if codes.ndim != 1 or (codes.size and not np.issubdtype(codes.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D array of item codes (integers)")
    codes = codes.astype(np.int64, copy=False)
    if codes.size and (codes.min() < 0 or codes.max() >= n_items):  # (cheaper than a mask)
        bad = (codes < 0) | (codes >= n_items)
        raise ValueError(
            f"{name} must hold item codes in [0, {n_items}): item code {codes[bad][0]} is "
            f"outside 0..{n_items - 1}; drop the -1 padding first"
        )
    return codes


def distinct_users(interactions: sp.spmatrix) -> np.ndarray:
    """How many users interacted with each item (the popularity every model falls back on)."""
    return np.diff(sp.csc_matrix(interactions).indptr).astype(np.float32)


def excluded_mask(exclude_items: np.ndarray | None, n_items: int) -> np.ndarray:
    """``exclude_items`` (item codes, or a boolean mask over the items) as a boolean mask."""
    blocked = np.zeros(n_items, dtype=bool)
    if exclude_items is None:
        return blocked
    exclude_items = np.asarray(exclude_items)
    if exclude_items.dtype == bool:
        if exclude_items.shape != blocked.shape:
            raise ValueError("a boolean exclude_items must have one entry per item")
        return blocked | exclude_items
    blocked[item_codes(exclude_items, n_items, "exclude_items")] = True
    return blocked


def dense_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows]`` as a dense float32 array, gathered from the CSR arrays directly
    (scipy's row indexing costs ~0.1 ms a call, too much for a request's few rows)."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, stops = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = stops - starts
    out = np.zeros((len(rows), matrix.shape[1]), np.float32)
    if lengths.sum():
        at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        out[np.repeat(np.arange(len(rows)), lengths), matrix.indices[at]] = matrix.data[at]
    return out


_SORT_FULLY = 512


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest scores per row, best first; -inf → -1."""
    k = min(k, scores.shape[1])
    if scores.shape[0] == 1:  # a request's row: plain indexing, a third of the cost
        row = scores[0]
        if len(row) <= _SORT_FULLY or k >= len(row):  # a few items: one sort is cheapest
            part = np.argsort(-row, kind="stable")[:k]
        else:
            part = np.argpartition(-row, k - 1)[:k]
            part = part[np.argsort(-row[part], kind="stable")]
        values = row[part]
        ids = part.astype(np.int64)
        ids[~np.isfinite(values)] = -1
        return ids[None, :], values[None, :]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    ids[~np.isfinite(values)] = -1
    return ids.astype(np.int64), values
