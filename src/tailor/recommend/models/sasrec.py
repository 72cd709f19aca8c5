"""SASRec: next-item recommendation with causal self-attention over each user's sequence.

W.-C. Kang and J. McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018. A user's
items in time order, s_1 … s_n (the last ``max_len``), are embedded as Ê_t = M_{s_t} + P_t
(item embedding M, learned positional embedding P, §III.A), passed through ``blocks``
self-attention blocks, each x + Dropout(g(LayerNorm(x))) for the attention and for the
point-wise feed-forward network (§III.B-C, eq. 4-5), with causality: position t attends only
to positions ≤ t. The score of item i after position t is the relevance r_{i,t} = F_t · M_i
with the item embedding shared between input and output (§III.D, eq. 6).

Loss. The paper trains with binary cross-entropy against one uniformly sampled negative per
position (eq. 7); ``loss="bce"`` does that (with ``negatives`` of them). The default,
``loss="softmax"``, is the cross-entropy over the whole catalog at every position: on catalogs
the size this platform serves (thousands of items) it costs little more and it converges in
far fewer epochs, which matters on a CPU (Klenitskiy and Vasilev, "Turning Dross Into Gold
Loss: is BERT4Rec really better than SASRec?", RecSys 2023, report the same).

PyTorch is an optional dependency (``pip install 'tailor[deep]'``): this module imports
without it, and fitting or scoring raises :class:`MissingDependencyError` saying so.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from tailor.recommend.base import Recommender

if TYPE_CHECKING:
    from tailor.recommend.catalog import Catalog
    from tailor.recommend.interactions import InteractionLog

# Never more threads than this: training and scoring share a small machine with the platform.
_MAX_THREADS = 2
_SCORE_BATCH = 256
# Prefix of the network's weights among the saved arrays.
_WEIGHT_PREFIX = "net__"
LOSSES = ("softmax", "bce")


class MissingDependencyError(ImportError):
    """An optional dependency of a model is not installed."""


def _import_torch() -> Any:
    """The ``torch`` module, or :class:`MissingDependencyError` saying how to install it."""
    try:
        import torch
    except ImportError as error:
        raise MissingDependencyError("SASRec needs PyTorch: pip install 'tailor[deep]'") from error
    return torch


class SASRec(Recommender):
    """Self-attentive sequential recommendation (Kang and McAuley, ICDM 2018).

    Parameters
    ----------
    max_len : n, the most recent items of a sequence the model looks at.
    hidden : d, the embedding and hidden size.
    blocks : b, the stacked self-attention blocks.
    heads : attention heads (the paper uses one); ``hidden`` must be divisible by it.
    dropout : dropout rate in [0, 1), on the embeddings and inside each block.
    epochs : passes over the training sequences.
    batch_size : sequences per gradient step.
    learning_rate : Adam's step size (β = 0.9, 0.98 as in the paper).
    l2 : weight decay on all weights.
    loss : ``"softmax"`` (cross-entropy over the catalog) or ``"bce"`` (the paper's eq. 7
        with sampled negatives); see the module docstring.
    negatives : sampled negatives per position for ``loss="bce"``.
    seed : weight initialization, dropout, shuffling and negative sampling.
    threads : torch threads while fitting and scoring, at most 2. One is the default: on two
        cores shared with other work, a second OpenMP thread made a training step 3.5 times
        slower (threads spin waiting for a busy core), while on idle cores it can at best
        halve it.

    Notes
    -----
    ``fit`` needs ``log=``, the interaction rows with their times: each training user's items
    are ordered by time (equal times by row order), consecutive repeats of one item (a view
    then a purchase) count once, and the last ``max_len + 1`` items give one training
    sequence. After fitting, ``sequences_`` holds each training user's last ``max_len`` items
    (codes + 1, left-padded with 0) and ``weights_`` the network as NumPy arrays.

    A known user (``users[i] >= 0`` in :meth:`score`) is scored from their stored sequence
    followed by the items of their history row that they had not interacted with in training.
    A history row carries no order, so those new items, and the whole history of an unseen
    user, are ordered by ascending weight (ties by item code): heavier interactions (a
    purchase over a view) and, with time-decayed weights, more recent ones come last, nearest
    the prediction. That is only an approximation: callers that have the real order should use
    :meth:`score_sequences`.

    The defaults (20 epochs at learning rate 3e-3) were picked on a validation split of
    MovieLens 100K (each user's last training item held out): 30 or 40 epochs, a learning
    rate of 1e-3 or 5e-3 and dropout 0.5 did no better; ``max_len=100`` gained about 10 % nDCG@10
    for 2.3 times the training time; the paper's BCE loss at 20 epochs lost a quarter of it.

    Set ``progress`` to a callable ``(label, done, total)`` to follow training per epoch.
    """

    name = "sasrec"
    needs = ("log",)
    progress: Callable[[str, int, int | None], None] | None = None

    def __init__(
        self,
        *,
        max_len: int = 50,
        hidden: int = 64,
        blocks: int = 2,
        heads: int = 1,
        dropout: float = 0.2,
        epochs: int = 20,
        batch_size: int = 128,
        learning_rate: float = 3e-3,
        l2: float = 0.0,
        loss: str = "softmax",
        negatives: int = 1,
        seed: int = 42,
        threads: int = 1,
    ) -> None:
        self.max_len = max_len
        self.hidden = hidden
        self.blocks = blocks
        self.heads = heads
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.l2 = l2
        self.loss = loss
        self.negatives = negatives
        self.seed = seed
        self.threads = threads

    # --- validation -----------------------------------------------------------------------

    def _check_params(self) -> None:
        for field in (
            "max_len",
            "hidden",
            "blocks",
            "heads",
            "epochs",
            "batch_size",
            "negatives",
            "threads",
        ):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{field} must be an integer >= 1, got {value!r}")
        if self.hidden % self.heads:
            raise ValueError(
                f"hidden ({self.hidden}) must be divisible by heads ({self.heads}): each head "
                "attends over hidden / heads dimensions"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not self.l2 >= 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.threads > _MAX_THREADS:
            raise ValueError(f"threads must be at most {_MAX_THREADS}, got {self.threads}")

    # --- training -------------------------------------------------------------------------

    def _fit_with(
        self,
        interactions: sp.csr_matrix,
        *,
        log: InteractionLog | None,
        catalog: Catalog | None,
    ) -> None:
        self._check_params()
        assert log is not None  # Recommender.fit enforces ``needs``
        n_users, n_items = interactions.shape
        if len(log) == 0:
            raise ValueError("log is empty: SASRec learns from the interaction rows in time order")
        if log.user.max() >= n_users or log.item.max() >= n_items:
            raise ValueError(
                f"log has codes beyond the interactions' {n_users} users × {n_items} items; "
                "build the matrix from the same log (log.matrix())"
            )
        torch = _import_torch()
        per_user = _user_sequences(log.user, log.item, log.time, n_users)
        inputs, targets = _training_pairs(per_user, self.max_len)
        if len(inputs) == 0:
            raise ValueError(
                "no user has two or more distinct consecutive items: SASRec needs sequences "
                "to learn the next item from"
            )
        self.sequences_ = _pad([seq[-self.max_len :] + 1 for seq in per_user], self.max_len)
        # The items each user had in training, to tell new history items from old at scoring.
        self.trained_items_ = sp.csr_matrix(
            (np.ones(len(log), np.float32), (log.user, log.item)), shape=(n_users, n_items)
        )
        self.trained_items_.sum_duplicates()
        self.trained_items_.data[:] = 1.0
        losses: list[float] = []
        with _torch_session(torch, self.threads, self.seed):
            net = _network(torch, n_items, self)
            optimizer = torch.optim.Adam(
                net.parameters(),
                lr=self.learning_rate,
                betas=(0.9, 0.98),
                weight_decay=self.l2,
            )
            rng = np.random.default_rng(self.seed)
            inputs_t = torch.from_numpy(inputs.astype(np.int64))
            targets_t = torch.from_numpy(targets.astype(np.int64))
            net.train()
            for epoch in range(self.epochs):
                order = torch.from_numpy(rng.permutation(len(inputs)))
                total, count = 0.0, 0
                for start in range(0, len(order), self.batch_size):
                    rows = order[start : start + self.batch_size]
                    batch_loss = self._batch_loss(torch, net, inputs_t[rows], targets_t[rows])
                    optimizer.zero_grad()
                    batch_loss.backward()
                    optimizer.step()
                    total += float(batch_loss.detach()) * len(rows)
                    count += len(rows)
                losses.append(total / count)
                if not math.isfinite(losses[-1]):
                    raise FloatingPointError(
                        f"SASRec's loss became {losses[-1]} in epoch {epoch + 1}; lower "
                        "learning_rate"
                    )
                if self.progress is not None:
                    self.progress("sasrec epochs", epoch + 1, self.epochs)
            net.eval()
        self.loss_history_ = np.asarray(losses, np.float32)
        self.weights_ = {
            key: value.detach().cpu().numpy().copy() for key, value in net.state_dict().items()
        }
        self._net = net

    def _batch_loss(self, torch: Any, net: Any, inputs: Any, targets: Any) -> Any:
        """Mean loss over the real (non-padding) positions of a batch."""
        hidden = net(inputs)
        valid = targets > 0
        states = hidden[valid]
        wanted = targets[valid]
        embeddings = net.items.weight
        if self.loss == "softmax":
            logits = states @ embeddings[1:].T
            return torch.nn.functional.cross_entropy(logits, wanted - 1)
        # Eq. 7: -log σ(r_pos) - Σ log(1 - σ(r_neg)), negatives drawn uniformly from the
        # catalog (the paper also skips the user's own items; with thousands of items a hit is
        # rare and the check would cost a lookup per sample).
        n_items = embeddings.shape[0] - 1
        negatives = torch.randint(1, n_items + 1, (len(wanted), self.negatives))
        positive = (states * embeddings[wanted]).sum(-1)
        negative = (states[:, None, :] * embeddings[negatives]).sum(-1)
        softplus = torch.nn.functional.softplus
        return (softplus(-positive) + softplus(negative).sum(-1)).mean()

    # --- scoring --------------------------------------------------------------------------

    def _score(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        sequences = []
        for row in range(history.shape[0]):
            items = history.indices[history.indptr[row] : history.indptr[row + 1]]
            weights = history.data[history.indptr[row] : history.indptr[row + 1]]
            user = -1 if users is None else int(users[row])
            if 0 <= user < len(self.sequences_):
                stored = self.sequences_[user]
                stored = stored[stored > 0].astype(np.int64) - 1
                trained = self.trained_items_.indices[
                    self.trained_items_.indptr[user] : self.trained_items_.indptr[user + 1]
                ]
                new = ~np.isin(items, trained)
                items, weights = items[new], weights[new]
            else:
                stored = np.zeros(0, np.int64)
            # A csr row has no order: lighter first, so that the heaviest (and, with decayed
            # weights, the latest) interactions sit nearest the prediction.
            order = np.lexsort((items, weights))
            sequences.append(np.concatenate([stored, items[order].astype(np.int64)]))
        return self._score_sequences(sequences)

    def score_sequences(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Scores (n_sequences × n_items) of the next item after each ordered sequence.

        Parameters
        ----------
        sequences : one 1-D array of item codes per user or session, oldest first (the API
            passes a session's events in the order they happened). Only the last ``max_len``
            items count, and consecutive repeats of one item count once, as in training.

        Returns
        -------
        numpy.ndarray
            float32 relevance F_n · M_i (Kang and McAuley eq. 6) of every catalog item after
            the last position; an empty sequence gets a row of zeros (``recommend`` falls
            back on popularity for those).
        """
        self._check_fitted()
        checked = []
        for index, sequence in enumerate(sequences):
            sequence = np.asarray(sequence)
            if sequence.ndim != 1:
                raise ValueError(f"sequences[{index}] must be 1-D, got shape {sequence.shape}")
            if sequence.size and not np.issubdtype(sequence.dtype, np.integer):
                raise ValueError(f"sequences[{index}] must hold integer item codes")
            if sequence.size and (sequence.min() < 0 or sequence.max() >= self.n_items_):
                raise ValueError(f"sequences[{index}] has item codes outside [0, {self.n_items_})")
            checked.append(sequence.astype(np.int64))
        return self._score_sequences(checked)

    def _score_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        n_items = int(self.n_items_)
        scores = np.zeros((len(sequences), n_items), np.float32)
        windows = [_collapse_repeats(seq)[-self.max_len :] for seq in sequences]
        nonempty = np.flatnonzero([len(w) > 0 for w in windows])
        if not nonempty.size:
            return scores
        torch = _import_torch()
        padded = _pad([windows[i] + 1 for i in nonempty], self.max_len)
        with _torch_session(torch, self.threads, None):
            net = self._network(torch)
            with torch.no_grad():
                items = net.items.weight[1:]
                for start in range(0, len(padded), _SCORE_BATCH):
                    batch = torch.from_numpy(padded[start : start + _SCORE_BATCH].astype(np.int64))
                    # Left padding puts every sequence's latest item at the last position.
                    final = net(batch)[:, -1, :]
                    rows = nonempty[start : start + _SCORE_BATCH]
                    scores[rows] = (final @ items.T).numpy()
        return scores

    def _network(self, torch: Any) -> Any:
        """The network, rebuilt from ``weights_`` after loading (once, then cached)."""
        net = getattr(self, "_net", None)
        if net is None:
            net = _network(torch, int(self.n_items_), self)
            net.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights_.items()})
            net.eval()
            self._net = net
        return net

    # --- persistence ----------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The base state plus the network's state_dict as ``net__<name>`` arrays."""
        weights = self.weights_
        del self.weights_
        try:
            arrays, scalars = super()._state()
        finally:
            self.weights_ = weights
        arrays.update({_WEIGHT_PREFIX + key: value for key, value in weights.items()})
        return arrays, scalars

    def _restore(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.weights_ = {
            key.removeprefix(_WEIGHT_PREFIX): value
            for key, value in arrays.items()
            if key.startswith(_WEIGHT_PREFIX)
        }
        rest = {k: v for k, v in arrays.items() if not k.startswith(_WEIGHT_PREFIX)}
        super()._restore(scalars, rest)
        self._net = None


# --- sequences ----------------------------------------------------------------------------


def _collapse_repeats(sequence: np.ndarray) -> np.ndarray:
    """The sequence without consecutive repeats: a view, click and purchase of one item are one
    step, not a pattern "the next item is the same item" (which recommend() excludes)."""
    if len(sequence) < 2:
        return sequence
    keep = np.ones(len(sequence), bool)
    keep[1:] = sequence[1:] != sequence[:-1]
    return sequence[keep]


def _user_sequences(
    user: np.ndarray, item: np.ndarray, time: np.ndarray, n_users: int
) -> list[np.ndarray]:
    """Each user's item codes in time order, equal times by row order, repeats collapsed."""
    # lexsort is stable, so the row order breaks ties of (user, time).
    order = np.lexsort((time, user))
    bounds = np.searchsorted(user[order], np.arange(n_users + 1))
    items = item[order].astype(np.int64)
    return [_collapse_repeats(items[bounds[u] : bounds[u + 1]]) for u in range(n_users)]


def _training_pairs(per_user: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded (input, target) rows, codes + 1: the target at t is the input at t + 1.

    As in the paper, a user contributes the last ``max_len + 1`` items of their sequence.
    """
    chosen = [seq[-(max_len + 1) :] + 1 for seq in per_user if len(seq) >= 2]
    inputs = _pad([seq[:-1] for seq in chosen], max_len)
    targets = _pad([seq[1:] for seq in chosen], max_len)
    return inputs, targets


def _pad(sequences: list[np.ndarray], max_len: int) -> np.ndarray:
    """Rows of the last ``max_len`` entries, left-padded with 0 (the padding item)."""
    out = np.zeros((len(sequences), max_len), np.int32)
    for row, seq in enumerate(sequences):
        seq = seq[-max_len:]
        if len(seq):
            out[row, -len(seq) :] = seq
    return out


# --- the network --------------------------------------------------------------------------


@contextmanager
def _torch_session(torch: Any, threads: int, seed: int | None) -> Iterator[None]:
    """Limit torch's threads and, given a seed, fork its random state, restoring both after:
    a fit must not change the random numbers or thread count of the code that called it."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(threads, _MAX_THREADS))
    try:
        if seed is None:
            yield
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                yield
    finally:
        torch.set_num_threads(before)


def _network(torch: Any, n_items: int, model: SASRec) -> Any:
    return _network_class(torch)(
        n_items=n_items,
        max_len=model.max_len,
        hidden=model.hidden,
        blocks=model.blocks,
        heads=model.heads,
        dropout=model.dropout,
    )


@functools.cache
def _network_class(torch: Any) -> type:
    """The SASRec network as a ``torch.nn.Module`` class (defined here so that the module
    imports without torch)."""
    nn = torch.nn

    class SASRecNetwork(nn.Module):
        """Embedding (§III.A), causal self-attention blocks (§III.B-C), final LayerNorm."""

        def __init__(
            self,
            *,
            n_items: int,
            max_len: int,
            hidden: int,
            blocks: int,
            heads: int,
            dropout: float,
        ) -> None:
            super().__init__()
            self.heads = heads
            self.items = nn.Embedding(n_items + 1, hidden, padding_idx=0)
            self.positions = nn.Embedding(max_len, hidden)
            self.dropout = nn.Dropout(dropout)
            # norm_first: x + Dropout(g(LayerNorm(x))), the paper's residual form; the
            # feed-forward network is d × d with ReLU, as in eq. 5.
            layer = nn.TransformerEncoderLayer(
                hidden,
                heads,
                dim_feedforward=hidden,
                dropout=dropout,
                activation="relu",
                batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(hidden)
            self.scale = math.sqrt(hidden)
            # Embeddings start at unit-scale entries after the √d scaling, so that the first
            # scores F · M are of order one.
            nn.init.normal_(self.items.weight, std=1.0 / self.scale)
            nn.init.normal_(self.positions.weight, std=1.0 / self.scale)
            with torch.no_grad():
                self.items.weight[0].zero_()

        def forward(self, sequences: Any) -> Any:
            """Hidden states F (batch × max_len × hidden) of left-padded item sequences."""
            length = sequences.shape[1]
            real = sequences > 0
            # √d scaling of the item embedding follows the authors' code (and Vaswani et al.).
            x = self.items(sequences) * self.scale + self.positions.weight[:length]
            x = self.dropout(x) * real[..., None]
            # Causality (§III.B): query t sees keys j ≤ t that are real items. A padding query
            # sees itself only, so that no attention row is empty (which would give NaN).
            causal = torch.ones(length, length, dtype=torch.bool).tril()
            allowed = causal & real[:, None, :]
            allowed |= torch.eye(length, dtype=torch.bool)
            mask = (~allowed).repeat_interleave(self.heads, dim=0)
            x = self.encoder(x, mask=mask)
            return self.norm(x)

    return SASRecNetwork
