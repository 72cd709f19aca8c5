"""A seeded simulator of an online shop with known ground truth, usable at any scale.

Users have latent taste vectors, items have latent factor vectors, a category, a Zipf-like
popularity, a price and a title/description built from a small vocabulary of their category.
Sessions are biased to one category (in-session intent): each draws a candidate pool by
popularity, mostly from its intent category, and every view picks from the pool's items in
stock with probability proportional to ``exp(affinity_weight * user·item)``. That is sampling-
importance-resampling of ``softmax(affinity_weight * user·item + log popularity)`` over the
intent category, vectorized over all sessions. Later engines can be checked against the
truth: a recommender should recover the users' tastes (:func:`shop_truth`).

Every session yields several ``view`` rows, some ``add_to_cart`` (and occasional
``remove_from_cart``), sometimes a ``purchase`` (one row per basket line sharing one
``event_id``) and occasional ``rating`` rows. Each user's first session starts with two
``consent`` events (``personalization`` and ``analytics`` granted); a configured share of users
later revokes ``personalization``. A share of items goes out of stock (and some come back);
nobody views, carts or buys an item while it is unavailable (:func:`shop_item_changes`).

Generation is vectorized with numpy and runs chunk by chunk: chunk ``k`` covers the ``k``-th
slice of the simulated period, its rows are sorted by ``occurred_at``, so the whole stream is
in time order and memory stays bounded whatever ``events`` is.

Examples
--------
>>> from tailor.datasets.simulate.shop import ShopConfig, simulate_shop
>>> ds = simulate_shop(ShopConfig(users=50, items=40, events=2_000, categories=8, seed=1))
>>> ds.events.num_rows > 1_900
True
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tailor.datasets.base import Dataset
from tailor.events.columns import EVENT_SCHEMA, ITEM_CATEGORY_SEPARATOR
from tailor.events.table import conform_entities, conform_events

__all__ = [
    "ShopConfig",
    "ShopConfigError",
    "ShopTruth",
    "SimulationSummary",
    "iter_shop_events",
    "load_truth",
    "shop_item_changes",
    "shop_items",
    "shop_paths",
    "shop_truth",
    "shop_users",
    "simulate_shop",
    "write_shop",
]

# --- vocabulary -------------------------------------------------------------------------------

_TAXONOMY: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Fashion",
        ("T-Shirts", "Jeans", "Dresses", "Jackets", "Sneakers", "Boots", "Handbags", "Scarves"),
    ),
    (
        "Electronics",
        (
            "Headphones",
            "Smartphones",
            "Laptops",
            "Tablets",
            "Smartwatches",
            "Cameras",
            "Speakers",
            "Chargers",
        ),
    ),
    (
        "Home & Kitchen",
        ("Cookware", "Knives", "Coffee Makers", "Bedding", "Towels", "Lamps", "Storage", "Vases"),
    ),
    (
        "Sports & Outdoors",
        (
            "Running Shoes",
            "Yoga Mats",
            "Tents",
            "Backpacks",
            "Bicycles",
            "Water Bottles",
            "Dumbbells",
            "Swimwear",
        ),
    ),
    (
        "Beauty",
        (
            "Skincare",
            "Perfume",
            "Shampoo",
            "Makeup",
            "Nail Polish",
            "Hair Dryers",
            "Sunscreen",
            "Razors",
        ),
    ),
    (
        "Books & Media",
        (
            "Novels",
            "Cookbooks",
            "Comics",
            "Board Games",
            "Puzzles",
            "Vinyl Records",
            "Notebooks",
            "Picture Books",
        ),
    ),
)

# Per top-level category, so that descriptions of related items share words.
_MATERIALS: tuple[tuple[str, ...], ...] = (
    ("cotton", "denim", "leather", "wool", "linen", "silk"),
    ("aluminium", "matte plastic", "tempered glass", "carbon fibre", "brushed steel"),
    ("stainless steel", "ceramic", "oak wood", "organic cotton", "cast iron", "glass"),
    ("breathable mesh", "recycled nylon", "aluminium", "natural rubber", "neoprene"),
    ("natural oils", "aloe vera", "shea butter", "vitamin E", "argan oil"),
    ("hardcover", "paperback", "recycled paper", "premium cardboard", "heavyweight vinyl"),
)
_FEATURES: tuple[tuple[str, ...], ...] = (
    ("a relaxed fit", "a slim cut", "reinforced seams", "a soft lining", "hidden pockets"),
    ("long battery life", "fast charging", "noise cancelling", "a bright display", "bluetooth"),
    ("an easy-clean finish", "a modern design", "a non-stick coating", "a compact shape"),
    ("extra grip", "a lightweight frame", "quick-dry fabric", "shock absorption", "a rain shell"),
    ("a fresh scent", "a long-lasting formula", "a gentle texture", "SPF protection"),
    ("beautiful illustrations", "a gripping story", "clear instructions", "bonus content"),
)
_USES: tuple[tuple[str, ...], ...] = (
    ("everyday wear", "the office", "weekends", "evenings out", "travel"),
    ("work", "gaming", "music", "travel", "streaming"),
    ("the kitchen", "the living room", "the bedroom", "family dinners", "small apartments"),
    ("running", "hiking", "the gym", "camping", "cycling"),
    ("daily care", "sensitive skin", "evenings", "summer days", "quick routines"),
    ("quiet evenings", "game nights", "long journeys", "gifting", "young readers"),
)
_BRANDS: tuple[tuple[str, ...], ...] = (
    ("Nordwear", "Urban Thread", "Linea", "Maison Vert", "Bluefield"),
    ("Voltix", "Soundwave", "Pixelia", "Nexon", "Auralis"),
    ("Casa Nova", "Hearth & Co", "Kitchenly", "Lumina", "Oakline"),
    ("Trailhead", "Peakform", "Stride", "Aquafit", "Summit Gear"),
    ("Glowly", "Pure Leaf", "Velvet Skin", "Bloom Lab", "Aurora"),
    ("Inkwell", "Paperlane", "Meeple House", "Groove Records", "Little Owl"),
)
_ADJECTIVES: tuple[str, ...] = (
    "Classic", "Modern", "Lightweight", "Premium", "Compact", "Essential", "Deluxe", "Vintage",
    "Eco", "Pro", "Ultra", "Smart", "Cozy", "Sleek", "Durable", "Everyday", "Signature",
    "Urban", "Soft", "Bold",
)  # fmt: skip
_COLORS: tuple[str, ...] = ("black", "white", "navy", "red", "green", "grey", "beige", "blue")

_EVENT_TYPES: tuple[str, ...] = (
    "consent", "view", "add_to_cart", "remove_from_cart", "purchase", "rating",
)  # fmt: skip
_CONSENT, _VIEW, _CART, _REMOVE, _PURCHASE, _RATING = range(6)
_CONSENT_PURPOSES: tuple[str, ...] = ("personalization", "analytics")
_PERSONALIZATION, _ANALYTICS = 0, 1

# Seconds after the last view of a session: carts land up to 30 s after their view, removals
# up to 120 s after that, the purchase 160-280 s after the last view, ratings up to 300 s after
# the purchase. The session's raw length is its last view offset plus _TAIL_SECONDS.
_TAIL_SECONDS = 580.0
_MICROS = 1_000_000
_NEVER = np.iinfo(np.int64).max
_TIMESTAMP = pa.timestamp("us", tz="UTC")

_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")


# --- configuration ----------------------------------------------------------------------------


class ShopConfigError(ValueError):
    """A :class:`ShopConfig` field holds a bad value; ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True, kw_only=True)
class ShopConfig:
    """What to simulate. Same config (seed included) → identical output.

    Parameters
    ----------
    users : number of users (``u0`` .. ``u{users-1}``).
    items : number of items (``i0`` .. ``i{items-1}``).
    events : target number of event *rows*; the result is within a few rows per chunk of it.
    categories : leaf categories, each under one of ``top_categories`` top-level ones; the
        item category path is ``"Top > Leaf"``. At most ``items``.
    top_categories : top-level categories (at most 6 distinct vocabularies; more repeat them).
    factors : dimensions of the latent taste/item vectors.
    start : first instant of the simulated period (time zone aware).
    days : length of the simulated period.
    seed : random seed; also part of every ``event_id`` (``sim{seed}-{n}``).
    views_per_session_mean : mean of the geometric number of views in a session.
    views_per_session_max : cap on views in one session.
    view_gap_seconds : mean seconds between two views (exponential, plus one second).
    cart_probability : chance a view leads to ``add_to_cart`` for an item of the session's
        typical affinity (logistic in the affinity difference, slope ``cart_affinity_slope``).
    cart_affinity_slope : how strongly a higher affinity raises the cart chance.
    remove_probability : chance a cart line is removed again.
    purchase_probability : chance a session with a non-empty cart ends with a purchase.
    basket_max : most lines in one purchase (distinct carted items, first ones kept).
    rating_probability : chance a purchased line is rated (1..5, rising with affinity).
    revoke_share : share of users who revoke ``personalization`` consent later.
    availability_change_share : share of items that go out of stock during the period.
    availability_return_share : share of those that come back before the period ends.
    intent_share : chance a session's intent category is one of the user's preferred ones
        (else any category).
    session_category_share : share of a session's candidate items drawn from its intent
        category (the rest from the whole catalog by popularity).
    pool_size : candidate items per session (drawn by popularity, then chosen by affinity).
    affinity_weight : inverse temperature of the choice softmax over affinity.
    popularity_exponent : Zipf exponent of item popularity (0: uniform).
    activity_sigma : log-normal spread of how many sessions users have.
    countries, device_types, channels : ``(value, weight)`` pairs; weights need not sum to 1.
    policy_version : ``policy_version`` of consent events.
    chunk_rows : rows generated (and written as one Parquet row group) per chunk; bounds
        memory. Part of the simulation: another value gives another (equally valid) output.
    """

    users: int = 10_000
    items: int = 5_000
    events: int = 500_000
    categories: int = 30
    top_categories: int = 6
    factors: int = 8
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    days: int = 90
    seed: int = 0
    views_per_session_mean: float = 5.0
    views_per_session_max: int = 40
    view_gap_seconds: float = 45.0
    cart_probability: float = 0.12
    cart_affinity_slope: float = 1.5
    remove_probability: float = 0.1
    purchase_probability: float = 0.5
    basket_max: int = 4
    rating_probability: float = 0.15
    revoke_share: float = 0.03
    availability_change_share: float = 0.1
    availability_return_share: float = 0.6
    intent_share: float = 0.8
    session_category_share: float = 0.75
    pool_size: int = 16
    affinity_weight: float = 1.5
    popularity_exponent: float = 1.0
    activity_sigma: float = 1.0
    countries: tuple[tuple[str, float], ...] = (
        ("DE", 0.30), ("FR", 0.20), ("NL", 0.10), ("ES", 0.12),
        ("IT", 0.13), ("AT", 0.05), ("BE", 0.05), ("PL", 0.05),
    )  # fmt: skip
    device_types: tuple[tuple[str, float], ...] = (
        ("desktop", 0.35), ("mobile", 0.45), ("tablet", 0.08), ("app", 0.12),
    )  # fmt: skip
    channels: tuple[tuple[str, float], ...] = (
        ("direct", 0.30), ("organic", 0.30), ("paid_search", 0.20), ("email", 0.10),
        ("social", 0.10),
    )  # fmt: skip
    policy_version: str = "2024-01"
    chunk_rows: int = 500_000

    def validate(self) -> None:
        """Check every field.

        Raises
        ------
        ShopConfigError
            (a ``ValueError``) naming the first bad field, e.g. ``users must be >= 1 (got 0)``.
        """
        ints = {
            "users": (1, 100_000_000),
            "items": (1, 100_000_000),
            "events": (1, 10_000_000_000),
            "categories": (1, 10_000),
            "top_categories": (1, 1_000),
            "factors": (1, 1_024),
            "days": (1, 36_500),
            "seed": (0, 2**63 - 1),
            "views_per_session_max": (1, 10_000),
            "basket_max": (1, 1_000),
            "pool_size": (1, 1_024),
            "chunk_rows": (100, 20_000_000),
        }
        for name, (low, high) in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ShopConfigError(name, f"{name} must be an integer (got {value!r})")
            if value < low:
                raise ShopConfigError(name, f"{name} must be >= {low} (got {value})")
            if value > high:
                raise ShopConfigError(name, f"{name} must be <= {high} (got {value})")
        if self.categories > self.items:
            raise ShopConfigError(
                "categories",
                f"categories must be <= items ({self.items}) so every category has an item "
                f"(got {self.categories})",
            )
        if self.top_categories > self.categories:
            raise ShopConfigError(
                "top_categories",
                f"top_categories must be <= categories ({self.categories}) "
                f"(got {self.top_categories}; lower it with categories)",
            )
        if not isinstance(self.start, datetime) or self.start.tzinfo is None:
            raise ShopConfigError(
                "start", f"start must be a time-zone aware datetime ({self.start!r})"
            )
        if self.start.astimezone(UTC) < datetime(1970, 1, 1, tzinfo=UTC):
            raise ShopConfigError("start", f"start must not be before 1970 (got {self.start})")
        probabilities = (
            "cart_probability",
            "remove_probability",
            "purchase_probability",
            "rating_probability",
            "revoke_share",
            "availability_change_share",
            "availability_return_share",
            "intent_share",
            "session_category_share",
        )
        for name in probabilities:
            value = _number(self, name)
            if not 0.0 <= value <= 1.0:
                raise ShopConfigError(name, f"{name} must be between 0 and 1 (got {value})")
        minimums = {
            "views_per_session_mean": (1.0, False),
            "view_gap_seconds": (0.0, True),
            "affinity_weight": (0.0, False),
            "popularity_exponent": (0.0, False),
            "activity_sigma": (0.0, False),
        }
        for name, (low, strict) in minimums.items():
            value = _number(self, name)
            if value < low or (strict and value == low):
                raise ShopConfigError(
                    name, f"{name} must be {'>' if strict else '>='} {low:g} (got {value})"
                )
        _number(self, "cart_affinity_slope")
        self._validate_weights("countries", _COUNTRY_RE, "an ISO 3166-1 alpha-2 code like DE")
        self._validate_weights("device_types", None, "1-32 characters", 32)
        self._validate_weights("channels", None, "1-64 characters", 64)
        if not isinstance(self.policy_version, str) or not 1 <= len(self.policy_version) <= 32:
            raise ShopConfigError(
                "policy_version",
                f"policy_version must be 1-32 characters ({self.policy_version!r})",
            )

    def _validate_weights(
        self, name: str, pattern: re.Pattern[str] | None, what: str, max_length: int = 64
    ) -> None:
        pairs = getattr(self, name)
        try:
            values = [str(v) for v, _ in pairs]
            weights = [float(w) for _, w in pairs]
        except (TypeError, ValueError) as exc:
            raise ShopConfigError(name, f"{name} must be (value, weight) pairs ({exc})") from exc
        if not values:
            raise ShopConfigError(name, f"{name} must not be empty")
        for value in values:
            bad = (
                pattern.match(value) is None
                if pattern
                else not 1 <= len(value.strip()) <= max_length
            )
            if bad or value != value.strip():
                raise ShopConfigError(name, f"{name}: {value!r} is not {what}")
        if len(set(values)) != len(values):
            raise ShopConfigError(name, f"{name} lists a value twice")
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ShopConfigError(
                name, f"{name} weights must be finite, >= 0 and not all 0 (got {weights})"
            )


def _number(config: ShopConfig, name: str) -> float:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ShopConfigError(name, f"{name} must be a number (got {value!r})")
    if not math.isfinite(value):
        raise ShopConfigError(name, f"{name} must be finite (got {value})")
    return float(value)


# --- ground truth -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShopTruth:
    """The hidden parameters behind a simulation (what engines should recover).

    Attributes
    ----------
    user_factors : ``(users, factors)`` float32 taste vectors.
    item_factors : ``(items, factors)`` float32 item vectors. The true affinity of user ``u``
        for item ``i`` is ``user_factors[u] @ item_factors[i]`` (scaled to about unit
        variance over random pairs).
    item_popularity : ``(items,)`` Zipf-like popularity, sums to 1.
    item_category : ``(items,)`` leaf category index into ``categories``.
    user_preferred_category : ``(users,)`` each user's main preferred leaf category.
    user_categories : ``(users, 3)`` preferred categories, strongest first (may repeat).
    user_activity : ``(users,)`` relative session rate, sums to 1.
    item_price : ``(items,)`` unit price in EUR.
    categories : category paths (``"Top > Leaf"``) indexed by the category arrays.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    item_popularity: np.ndarray
    item_category: np.ndarray
    user_preferred_category: np.ndarray
    user_categories: np.ndarray
    user_activity: np.ndarray
    item_price: np.ndarray
    categories: tuple[str, ...]

    def affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """True affinity of ``users[k]`` for ``items[k]`` (index arrays of equal shape)."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        return np.einsum("...f,...f->...", self.user_factors[users], self.item_factors[items])


def _category_names(config: ShopConfig) -> tuple[tuple[str, ...], np.ndarray]:
    """Leaf category paths and each leaf's top-level vocabulary index."""
    names: list[str] = []
    vocab = np.arange(config.categories) % config.top_categories % len(_TAXONOMY)
    tops = [_TAXONOMY[t % len(_TAXONOMY)][0] for t in range(config.top_categories)]
    for t in range(config.top_categories):
        if t >= len(_TAXONOMY):
            tops[t] = f"{tops[t]} {t // len(_TAXONOMY) + 1}"
    for c in range(config.categories):
        top = c % config.top_categories
        leaves = _TAXONOMY[top % len(_TAXONOMY)][1]
        k = c // config.top_categories
        leaf = leaves[k % len(leaves)]
        if k >= len(leaves):
            leaf = f"{leaf} {k // len(leaves) + 1}"
        names.append(f"{tops[top]}{ITEM_CATEGORY_SEPARATOR}{leaf}")
    return tuple(names), vocab


def _build_truth(config: ShopConfig) -> ShopTruth:
    rng = np.random.default_rng([config.seed, 1])
    n_cat, n_top, f = config.categories, config.top_categories, config.factors
    leaf_top = np.arange(n_cat) % n_top
    top_centroid = rng.normal(size=(n_top, f))
    leaf_centroid = 0.6 * top_centroid[leaf_top] + 0.8 * rng.normal(size=(n_cat, f))

    # Uneven category sizes, but every category gets at least one item.
    cat_weight = rng.gamma(2.0, size=n_cat)
    cat_weight /= cat_weight.sum()
    cat_cdf = _cdf(cat_weight)
    rest = _draw(cat_cdf, rng.random(config.items - n_cat))
    item_category = rng.permutation(np.concatenate([np.arange(n_cat), rest]))
    item_factors = leaf_centroid[item_category] + 0.6 * rng.normal(size=(config.items, f))

    rank = rng.permutation(config.items) + 1.0
    popularity = rank ** (-config.popularity_exponent)
    popularity /= popularity.sum()

    user_categories = _draw(cat_cdf, rng.random((config.users, 3)))
    user_factors = (
        1.0 * leaf_centroid[user_categories[:, 0]]
        + 0.5 * leaf_centroid[user_categories[:, 1]]
        + 0.3 * leaf_centroid[user_categories[:, 2]]
        + 0.5 * rng.normal(size=(config.users, f))
    )
    # Scale both sides so that affinities of random pairs have about unit variance: the
    # choice temperature (affinity_weight) then means the same thing for any `factors`.
    a = rng.integers(0, config.users, 4096)
    b = rng.integers(0, config.items, 4096)
    spread = float(np.std(np.einsum("kf,kf->k", user_factors[a], item_factors[b]))) or 1.0
    user_factors /= math.sqrt(spread)
    item_factors /= math.sqrt(spread)

    activity = rng.lognormal(0.0, config.activity_sigma, config.users)
    activity /= activity.sum()

    price_rng = np.random.default_rng([config.seed, 2])
    cat_log_price = price_rng.uniform(math.log(8.0), math.log(120.0), n_cat)
    price = np.exp(cat_log_price[item_category] + 0.45 * price_rng.normal(size=config.items))
    price = np.maximum(np.round(price, 2), 0.99)

    names, _ = _category_names(config)
    return ShopTruth(
        user_factors=user_factors.astype(np.float32),
        item_factors=item_factors.astype(np.float32),
        item_popularity=popularity,
        item_category=item_category.astype(np.int64),
        user_preferred_category=user_categories[:, 0].astype(np.int64),
        user_categories=user_categories.astype(np.int64),
        user_activity=activity,
        item_price=price,
        categories=names,
    )


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=np.float64)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


def _draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: indices into ``cdf`` for uniforms ``u`` in [0, 1)."""
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


class _Sampler:
    """Inverse-CDF sampling with a guide table (Chen 1974): O(1) expected per draw.

    ``cdf`` is non-decreasing and ends at exactly ``top``; ``sampler(x)`` for ``x`` in
    ``[0, top)`` returns the first index whose ``cdf`` value exceeds ``x``, like
    ``searchsorted(cdf, x, side="right")`` but several times faster for random ``x``.
    """

    def __init__(self, cdf: np.ndarray, top: float) -> None:
        self.cdf = cdf
        self.buckets = 2 * len(cdf)
        self.scale = self.buckets / top
        edges = np.arange(self.buckets) / self.scale
        self.guide = np.searchsorted(cdf, edges, side="right").astype(np.int32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        shape = np.shape(x)
        x = np.ravel(x)
        bucket = np.minimum((x * self.scale).astype(np.int64), self.buckets - 1)
        # Rounding of x * scale can, for x within an ulp of a bucket edge, start one index
        # late: a neighbouring item, harmless for a simulation.
        index = np.minimum(self.guide[bucket], len(self.cdf) - 1).astype(np.int64)
        todo = np.flatnonzero(self.cdf[index] <= x)
        while len(todo):
            index[todo] += 1
            todo = todo[self.cdf[index[todo]] <= x[todo]]
        return index.reshape(shape)


def _weights(pairs: tuple[tuple[str, float], ...]) -> tuple[pa.Array, np.ndarray]:
    values = pa.array([str(v) for v, _ in pairs], pa.string())
    return values, _cdf(np.array([float(w) for _, w in pairs]))


# --- the simulated world (truth + catalog dynamics + per-user context) -----------------------


@dataclass
class _World:
    config: ShopConfig
    truth: ShopTruth
    t0: int  # period start, µs since the epoch
    span: int  # period length, µs
    user_ids: pa.Array
    item_ids: pa.Array
    draw_user: _Sampler  # by activity
    user_pref_cdf: np.ndarray  # choice among a user's three preferred categories
    cat_order: np.ndarray  # items sorted by category
    draw_in_category: _Sampler  # x = c + u: category c's popularity CDF lies in (c, c + 1]
    draw_item: _Sampler  # by popularity
    user_country: np.ndarray
    user_device: np.ndarray
    revokes: np.ndarray
    countries: pa.Array
    devices: pa.Array
    device_cdf: np.ndarray
    channels: pa.Array
    channel_cdf: np.ndarray
    change_item: np.ndarray  # availability change log, sorted by (item, second)
    change_second: np.ndarray  # seconds from the start
    change_available: np.ndarray
    unavailable_from: np.ndarray  # per item, µs; an item has at most one outage
    unavailable_until: np.ndarray  # exclusive; _NEVER if it does not come back
    item_factors_t: np.ndarray  # (factors, items), contiguous rows for fast gathers
    null_columns: dict[pa.DataType, pa.Array] = field(default_factory=dict)

    def nulls(self, n: int, type_: pa.DataType) -> pa.Array:
        """An all-null column, sliced from a cached one (most columns are null each chunk)."""
        cached = self.null_columns.get(type_)
        if cached is None or len(cached) < n:
            cached = self.null_columns[type_] = pa.nulls(max(n, 1024), type_)
        return cached.slice(0, n)


def _build_world(config: ShopConfig) -> _World:
    config.validate()
    truth = _build_truth(config)
    rng = np.random.default_rng([config.seed, 3])
    t0 = int(config.start.astimezone(UTC).timestamp()) * _MICROS + config.start.microsecond
    span = config.days * 86_400 * _MICROS

    order = np.argsort(truth.item_category, kind="stable")
    sorted_cat = truth.item_category[order]
    pop = truth.item_popularity[order]
    cum = np.cumsum(pop)
    starts = np.searchsorted(sorted_cat, np.arange(config.categories), side="left")
    ends = np.searchsorted(sorted_cat, np.arange(config.categories), side="right")
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    total = cum[ends - 1] - before
    within = (cum - before[sorted_cat]) / total[sorted_cat]
    within[ends - 1] = 1.0  # exact category boundaries for the searchsorted trick
    cat_cdf = sorted_cat + within

    countries, country_cdf = _weights(config.countries)
    devices, device_cdf = _weights(config.device_types)
    channels, channel_cdf = _weights(config.channels)
    user_country = _draw(country_cdf, rng.random(config.users)).astype(np.int16)
    user_device = _draw(device_cdf, rng.random(config.users)).astype(np.int16)
    revokes = rng.random(config.users) < config.revoke_share

    # Availability: chosen items go out of stock once; some come back later. One outage per
    # item keeps the in-session check to two gathers and two comparisons.
    seconds = config.days * 86_400
    n_change = round(config.availability_change_share * config.items)
    changing = np.sort(rng.choice(config.items, n_change, replace=False)).astype(np.int64)
    off = (rng.uniform(0.02, 0.95, n_change) * seconds).astype(np.int64)
    back_after = rng.uniform(86_400, max(seconds / 3, 2 * 86_400), n_change).astype(np.int64)
    on = off + back_after
    returns = (rng.random(n_change) < config.availability_return_share) & (on < seconds)
    change_item = np.concatenate([changing, changing[returns]])
    change_second = np.concatenate([off, on[returns]])
    change_available = np.concatenate([np.zeros(n_change, bool), np.ones(returns.sum(), bool)])
    by_item = np.lexsort((change_second, change_item))
    unavailable_from = np.full(config.items, _NEVER, dtype=np.int64)
    unavailable_from[changing] = t0 + off * _MICROS
    unavailable_until = np.full(config.items, _NEVER, dtype=np.int64)
    unavailable_until[changing[returns]] = t0 + on[returns] * _MICROS

    return _World(
        config=config,
        truth=truth,
        t0=t0,
        span=span,
        user_ids=_ascending_ids("u", np.arange(config.users, dtype=np.int64)),
        item_ids=_ascending_ids("i", np.arange(config.items, dtype=np.int64)),
        draw_user=_Sampler(_cdf(truth.user_activity), 1.0),
        user_pref_cdf=np.array([0.6, 0.85, 1.0]),
        cat_order=order,
        draw_in_category=_Sampler(cat_cdf, float(config.categories)),
        draw_item=_Sampler(_cdf(truth.item_popularity), 1.0),
        user_country=user_country,
        user_device=user_device,
        revokes=revokes,
        countries=countries,
        devices=devices,
        device_cdf=device_cdf,
        channels=channels,
        channel_cdf=channel_cdf,
        change_item=change_item[by_item],
        change_second=change_second[by_item],
        change_available=change_available[by_item],
        unavailable_from=unavailable_from,
        unavailable_until=unavailable_until,
        item_factors_t=np.ascontiguousarray(truth.item_factors.T),
    )


# --- fast id strings --------------------------------------------------------------------------

_POWERS = 10 ** np.arange(1, 19, dtype=np.int64)
_DIGIT_PAIRS = (
    np.array([[48 + i // 10, 48 + i % 10] for i in range(100)], dtype=np.uint8)
    .view(np.uint16)
    .ravel()
)


def _ascending_ids(prefix: str, values: np.ndarray) -> pa.StringArray:
    """``f"{prefix}{v}"`` for non-decreasing non-negative ints ``values``, without Python loops.

    Rows of equal digit count form a dense byte matrix; digits are written two at a time
    through a strided 16-bit view of it.
    """
    values = np.asarray(values, dtype=np.int64)
    n = len(values)
    if n == 0:
        return pa.array([], pa.string())
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    p = len(head)
    bounds = np.searchsorted(values, _POWERS, side="left")
    cuts = np.concatenate([[0], bounds, [n]])
    widths = np.arange(1, len(cuts), dtype=np.int64)  # digits of the rows in cuts[w-1]:cuts[w]
    counts = np.diff(cuts)
    lengths = p + widths
    data = np.empty(int((counts * lengths).sum()), dtype=np.uint8)
    byte_start = np.concatenate([[0], np.cumsum(counts * lengths)])
    for w, count, length, at in zip(widths, counts, lengths, byte_start, strict=False):
        if count == 0:
            continue
        w, count, length, at = int(w), int(count), int(length), int(at)
        a = int(cuts[w - 1])
        template = np.zeros(length, dtype=np.uint8)
        template[:p] = head
        block = data[at : at + count * length].reshape(count, length)
        block[:] = np.tile(template, (count, 1))
        rest = values[a : a + count]
        if rest[-1] < 2**32:
            rest = rest.astype(np.uint32)  # faster division
        col = length
        for _ in range(w // 2):
            col -= 2
            quotient = rest // rest.dtype.type(100)
            pair = np.ndarray((count,), np.uint16, data, at + col, (length,))
            pair[:] = _DIGIT_PAIRS[rest - quotient * rest.dtype.type(100)]
            rest = quotient
        if w % 2:
            block[:, p] = rest.astype(np.uint8) + np.uint8(48)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.repeat(lengths, counts), out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError("id strings exceed 2 GiB in one array; lower chunk_rows")
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)
    )


def _validity(valid: np.ndarray | None) -> pa.Buffer | None:
    return None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))


def _primitive(values: np.ndarray, type_: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """A fixed-width Arrow array straight from numpy buffers (``pa.array(mask=...)`` is slow)."""
    if type_ == pa.bool_():
        data = pa.py_buffer(np.packbits(values.astype(bool), bitorder="little"))
    else:
        dtype = np.float64 if pa.types.is_floating(type_) else f"<i{type_.bit_width // 8}"
        data = pa.py_buffer(np.ascontiguousarray(values, dtype=dtype))
    return pa.Array.from_buffers(type_, len(values), [_validity(valid), data])


def _dictionary(indices: np.ndarray, values: pa.Array, valid: np.ndarray | None = None) -> pa.Array:
    """A dictionary array (cheap for Parquet to write) over ``values``.

    Indices must be in range where ``valid`` (they are by construction: the bounds check of
    ``safe=True`` would cost more than building the array).
    """
    codes = _primitive(indices.astype(np.int32), pa.int32(), valid)
    return pa.DictionaryArray.from_arrays(codes, values, safe=False)


def _compact_dictionary(
    indices: np.ndarray, values: pa.Array, valid: np.ndarray | None = None
) -> pa.Array:
    """Like :func:`_dictionary` but keeps only the used values (users/items can be many)."""
    used = np.zeros(len(values), dtype=bool)
    used[indices if valid is None else indices[valid]] = True
    remap = np.cumsum(used) - 1
    return _dictionary(remap[indices], values.take(np.flatnonzero(used)), valid)


# --- event generation -------------------------------------------------------------------------


@dataclass
class _State:
    seen: np.ndarray
    pending_user: np.ndarray
    pending_time: np.ndarray
    next_event: int = 0
    next_session: int = 0
    next_order: int = 0
    produced: int = 0
    rows_per_session: float = 1.0


def _by_user_and_start(user: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Session indices ordered by (user, start): one argsort of a combined int64 key."""
    n = len(user)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(start)] = np.arange(n)
    return np.argsort(user * n + rank)


def _first_sessions(user: np.ndarray, order: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Marks each not-yet-seen user's earliest session; ``order`` from _by_user_and_start."""
    first = np.zeros(len(user), dtype=bool)
    if len(order):
        sorted_user = user[order]
        head = np.concatenate([[True], sorted_user[1:] != sorted_user[:-1]])
        first[order[head]] = True
    return first & ~seen[user]


def _segment_rank(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within runs of equal values of ``groups`` (already grouped)."""
    n = len(groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    head = np.concatenate([[True], groups[1:] != groups[:-1]])
    index = np.arange(n)
    return index - np.maximum.accumulate(np.where(head, index, 0))


def _iter_tables(world: _World) -> Iterator[pa.Table]:
    """Event chunks in time order, low-cardinality columns dictionary-encoded."""
    config = world.config
    n_chunks = max(1, math.ceil(config.events / config.chunk_rows))
    state = _State(
        seen=np.zeros(config.users, dtype=bool),
        pending_user=np.zeros(0, dtype=np.int64),
        pending_time=np.zeros(0, dtype=np.int64),
        # A deliberate under-estimate: the first chunk over-generates and trims.
        rows_per_session=config.views_per_session_mean,
    )
    for k in range(n_chunks):
        w0 = world.t0 + world.span * k // n_chunks
        w1 = world.t0 + world.span * (k + 1) // n_chunks
        target = round((config.events - state.produced) / (n_chunks - k))
        table = _chunk(world, state, k, w0, w1, target)
        state.produced += table.num_rows
        if table.num_rows:
            yield table


def _chunk(world: _World, state: _State, k: int, w0: int, w1: int, target: int) -> pa.Table:
    """About ``target`` rows of events in ``[w0, w1)`` (µs), sorted by time.

    Over-generates sessions (their rows depend on the choices made in them), then keeps the
    prefix that best matches the row budget. ``state`` carries what spans chunks: who has
    been seen (consent), pending revocations, id counters and the rows-per-session estimate.
    """
    config, truth = world.config, world.truth
    rng = np.random.default_rng([config.seed, 7, k])
    n_items = config.items
    due = state.pending_time < w1
    budget = max(target - int(due.sum()), 0)
    n_sessions = math.ceil(budget / state.rows_per_session * 1.15) + 8 if budget > 0 else 0

    # Sessions: who, when, how many views, which intent category and context.
    s_user = world.draw_user(rng.random(n_sessions))
    s_start = rng.integers(w0, w1, n_sessions)
    s_views = np.clip(
        rng.geometric(1.0 / config.views_per_session_mean, n_sessions),
        1,
        config.views_per_session_max,
    )
    preferred = truth.user_categories[s_user, _draw(world.user_pref_cdf, rng.random(n_sessions))]
    s_intent = np.where(
        rng.random(n_sessions) < config.intent_share,
        preferred,
        rng.integers(0, config.categories, n_sessions),
    )
    s_device = np.where(
        rng.random(n_sessions) < 0.7,
        world.user_device[s_user],
        _draw(world.device_cdf, rng.random(n_sessions)),
    ).astype(np.int16)
    s_channel = _draw(world.channel_cdf, rng.random(n_sessions)).astype(np.int16)

    # View offsets (seconds from the session start): a per-session cumulative sum of gaps.
    v_sess = np.repeat(np.arange(n_sessions), s_views)
    v_end = np.cumsum(s_views)
    v_begin = v_end - s_views
    gaps = rng.exponential(config.view_gap_seconds, len(v_sess)) + 1.0
    cum = np.cumsum(gaps)
    before = cum[v_begin] - gaps[v_begin] if n_sessions else np.zeros(0)
    v_off = cum - before[v_sess]
    s_last = cum[v_end - 1] - before if n_sessions else np.zeros(0)
    s_length = ((s_last + _TAIL_SECONDS) * _MICROS).astype(np.int64)

    # Candidate pool per session: mostly popular items of the intent category, a few from the
    # whole catalog; then drop those not available for the whole session.
    n_cat_pool = round(config.pool_size * config.session_category_share)
    in_cat = world.draw_in_category(s_intent[:, None] + rng.random((n_sessions, n_cat_pool)))
    anywhere = world.draw_item(rng.random((n_sessions, config.pool_size - n_cat_pool)))
    pool = np.concatenate([world.cat_order[in_cat], anywhere], axis=1)
    # The session may run until s_end (before any squeeze, which only shortens it).
    s_end = s_start + s_length
    overlap = world.unavailable_from[pool] <= s_end[:, None]
    si, mi = np.nonzero(overlap)
    overlap[si, mi] = s_start[si] < world.unavailable_until[pool[si, mi]]
    available = ~overlap

    # affinity[s, m] = user_factors[user of s] @ item_factors[pool[s, m]], one factor at a
    # time: gathers from a small contiguous row are cheaper than from (items, factors).
    s_taste = truth.user_factors[s_user]
    affinity = world.item_factors_t[0][pool] * s_taste[:, :1]
    for f in range(1, config.factors):
        affinity += world.item_factors_t[f][pool] * s_taste[:, f : f + 1]
    logit = np.where(available, config.affinity_weight * affinity, -np.inf)
    top = logit.max(axis=1, initial=-np.inf)
    usable = np.isfinite(top)
    if not usable.all():
        # Nothing in the pool is in stock: the session does not happen.
        renumber = np.cumsum(usable) - 1
        keep_views = usable[v_sess]
        v_sess, v_off = renumber[v_sess[keep_views]], v_off[keep_views]
        s_user, s_start, s_views = s_user[usable], s_start[usable], s_views[usable]
        s_device, s_channel = s_device[usable], s_channel[usable]
        s_last, s_length = s_last[usable], s_length[usable]
        pool, affinity, logit, top = pool[usable], affinity[usable], logit[usable], top[usable]
        n_sessions = int(usable.sum())

    # Views: inverse-CDF sampling from each session's softmax over its pool, all sessions at
    # once by offsetting session s's CDF into (s, s + 1].
    weight = np.exp(logit - top[:, None])
    cdf = np.cumsum(weight, axis=1)
    cdf /= cdf[:, -1:]
    # Inverse CDF per view: count the pool entries whose CDF is <= u (equal CDF values, i.e.
    # unavailable entries, are skipped). Column by column over a transposed copy is cheaper
    # than a searchsorted over all sessions.
    cdf_t = np.ascontiguousarray(cdf[:, :-1].T, dtype=np.float32)
    u = rng.random(len(v_sess), dtype=np.float32)
    below = np.zeros(len(v_sess), dtype=np.int64)
    for cdf_column in cdf_t:
        below += cdf_column[v_sess] <= u
    pick = v_sess * config.pool_size + below
    v_item = pool.ravel()[pick]
    v_aff = affinity.ravel()[pick].astype(np.float64)
    # The affinity a view in this session has on average: carts depend on how much better
    # than that a viewed item is, so cart_probability stays the overall view-to-cart rate.
    s_typical = (weight * affinity).sum(axis=1) / weight.sum(axis=1)

    # Carts lean to high-affinity views; some are removed again.
    p0 = min(max(config.cart_probability, 1e-12), 1 - 1e-12)
    relative = v_aff - s_typical[v_sess]
    cart_logit = math.log(p0 / (1 - p0)) + config.cart_affinity_slope * relative
    carted = np.flatnonzero(rng.random(len(v_sess)) < 1.0 / (1.0 + np.exp(-cart_logit)))
    if config.cart_probability == 0:
        carted = carted[:0]
    c_sess, c_item, c_aff = v_sess[carted], v_item[carted], v_aff[carted]
    c_off = v_off[carted] + rng.uniform(2.0, 30.0, len(carted))
    r = rng.random(len(carted))
    c_qty = 1.0 + (r < 0.12) + (r < 0.04)
    removed = rng.random(len(carted)) < config.remove_probability
    r_off = c_off[removed] + rng.uniform(5.0, 120.0, int(removed.sum()))

    # Basket: distinct items still in the cart, the first basket_max of them per session.
    kept = np.flatnonzero(~removed)
    _, first_of_item = np.unique(c_sess[kept] * n_items + c_item[kept], return_index=True)
    lines = kept[first_of_item]
    line_no = _segment_rank(c_sess[lines])
    buys = rng.random(n_sessions) < config.purchase_probability
    chosen = (line_no < config.basket_max) & buys[c_sess[lines]]
    lines, line_no = lines[chosen], line_no[chosen]
    l_sess = c_sess[lines]
    s_purchase_off = s_last + rng.uniform(160.0, 280.0, n_sessions)

    rated = rng.random(len(lines)) < config.rating_probability
    t_lines = lines[rated]
    t_sess = c_sess[t_lines]
    t_off = s_purchase_off[t_sess] + rng.uniform(10.0, 300.0, len(t_lines))
    t_value = np.clip(np.rint(2.5 + c_aff[t_lines] + rng.normal(0.0, 0.8, len(t_lines))), 1, 5)

    # Trim the over-generated sessions (they are in random order) to the row budget.
    s_rows = (
        s_views
        + np.bincount(c_sess, minlength=n_sessions)
        + np.bincount(c_sess[removed], minlength=n_sessions)
        + np.bincount(l_sess, minlength=n_sessions)
        + np.bincount(t_sess, minlength=n_sessions)
    )
    # Whatever prefix is kept, each new user in it adds two consent rows; counting them at
    # the user's first session in generation order makes every prefix's row count exact.
    new_user = np.zeros(n_sessions, dtype=np.int64)
    new_user[np.unique(s_user, return_index=True)[1]] = 1
    new_user[state.seen[s_user]] = 0
    running = np.concatenate([[0], np.cumsum(s_rows + 2 * new_user)])
    n_keep = int(np.argmin(np.abs(running - budget)))
    if budget > 0 and n_sessions > 0:
        n_keep = max(n_keep, 1)  # a tiny target still gets a session
    if n_keep:
        state.rows_per_session = float(running[n_keep]) / n_keep
    s_user, s_start = s_user[:n_keep], s_start[:n_keep]
    s_device, s_channel = s_device[:n_keep], s_channel[:n_keep]
    s_length, s_purchase_off = s_length[:n_keep], s_purchase_off[:n_keep]
    first = _first_sessions(s_user, _by_user_and_start(s_user, s_start), state.seen)
    state.seen[s_user[first]] = True

    # Consent revocations: some time after the grant, before the period ends.
    t_end = world.t0 + world.span
    revoking = first & world.revokes[s_user]
    grant = s_start[revoking]
    room = np.maximum(t_end - grant, 2)
    revoke_at = grant + 1 + (rng.random(len(grant)) * (room - 1)).astype(np.int64)
    pending_user = np.concatenate([state.pending_user, s_user[revoking]])
    pending_time = np.concatenate([state.pending_time, revoke_at])
    due = pending_time < w1
    state.pending_user, state.pending_time = pending_user[~due], pending_time[~due]
    rv_user, rv_time = pending_user[due], pending_time[due]

    # Squeeze a session that would run into the user's next one (or past the chunk) so the
    # user's sessions never overlap and each user's events stay in time order.
    order = _by_user_and_start(s_user, s_start)
    limit = np.full(n_keep, w1, dtype=np.int64)
    if n_keep > 1:
        same = s_user[order[1:]] == s_user[order[:-1]]
        limit[order[:-1][same]] = s_start[order[1:][same]]
    scale = np.clip((limit - s_start - 1) / s_length, 0.0, 1.0) * _MICROS

    def at(sess: np.ndarray, offset: np.ndarray) -> np.ndarray:
        return s_start[sess] + (offset * scale[sess]).astype(np.int64)

    views = v_sess < n_keep
    carts = c_sess < n_keep
    rems = carts & removed
    buy_lines = l_sess < n_keep
    ratings = t_sess < n_keep
    f_sess = np.flatnonzero(first)
    p_sess, p_item = l_sess[buy_lines], c_item[lines[buy_lines]]
    r_item = c_item[t_lines[ratings]]
    segments: list[dict[str, Any]] = [
        # Consent first: at the session start, before its first view (stable sort on time).
        {"type": _CONSENT, "sess": f_sess, "time": s_start[f_sess], "purpose": _PERSONALIZATION},
        {"type": _CONSENT, "sess": f_sess, "time": s_start[f_sess], "purpose": _ANALYTICS},
        {
            "type": _VIEW,
            "sess": v_sess[views],
            "time": at(v_sess[views], v_off[views]),
            "item": v_item[views],
        },
        {
            "type": _CART,
            "sess": c_sess[carts],
            "time": at(c_sess[carts], c_off[carts]),
            "item": c_item[carts],
            "quantity": c_qty[carts],
        },
        {
            "type": _REMOVE,
            "sess": c_sess[rems],
            "time": at(c_sess[rems], r_off[carts[removed]]),
            "item": c_item[rems],
            "quantity": c_qty[rems],
        },
        {
            "type": _PURCHASE,
            "sess": p_sess,
            "time": at(p_sess, s_purchase_off[p_sess]),
            "item": p_item,
            "quantity": c_qty[lines[buy_lines]],
            "line": line_no[buy_lines],
        },
        {
            "type": _RATING,
            "sess": t_sess[ratings],
            "time": at(t_sess[ratings], t_off[ratings]),
            "item": r_item,
            "value": t_value[ratings],
        },
    ]
    if len(rv_user):
        segments.append(
            {
                "type": _CONSENT,
                "sess": np.full(len(rv_user), -1, dtype=np.int64),
                "user": rv_user,
                "time": rv_time,
                "purpose": _PERSONALIZATION,
            }
        )
    for segment in segments:
        if "user" not in segment:
            segment["user"] = s_user[segment["sess"]]
    sessions = {"start": s_start, "device": s_device, "channel": s_channel}
    table = _assemble(world, state, segments, sessions)
    state.next_session += n_keep
    return table


_DICTIONARY_COLUMNS = frozenset(
    {
        "event_type", "subject_id", "session_id", "device_type", "channel", "country",
        "item_id", "order_id", "currency", "purpose", "policy_version",
    }
)  # fmt: skip
_WRITE_SCHEMA = pa.schema(
    [
        pa.field(f.name, pa.dictionary(pa.int32(), pa.string()))
        if f.name in _DICTIONARY_COLUMNS
        else f
        for f in EVENT_SCHEMA
    ]
)


def _stable_order(when: np.ndarray) -> np.ndarray:
    """``argsort(when, kind="stable")``, faster: sort a unique key (time, position) instead."""
    n = len(when)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    low = int(when.min())
    if (int(when.max()) - low + 1) * n < 2**62:
        return np.argsort((when - low) * n + np.arange(n))
    return np.argsort(when, kind="stable")


def _assemble(
    world: _World, state: _State, segments: list[dict[str, Any]], sessions: dict[str, np.ndarray]
) -> pa.Table:
    """Concatenate the row segments, sort them by time and build the Arrow columns."""
    config = world.config
    sizes = [len(s["sess"]) for s in segments]

    def column(name: str, fill: Any, dtype: Any) -> np.ndarray:
        parts = [
            np.asarray(s[name], dtype=dtype)
            if np.ndim(s.get(name, fill))
            else np.full(size, s.get(name, fill), dtype=dtype)
            for s, size in zip(segments, sizes, strict=True)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    when = column("time", 0, np.int64)
    # Stable: equal times keep segment order (consent before views, basket lines together).
    order = _stable_order(when)
    when = when[order]
    etype = column("type", 0, np.int8)[order]
    sess = column("sess", -1, np.int64)[order]
    user = column("user", -1, np.int64)[order]
    item = column("item", -1, np.int64)[order]
    line = column("line", 0, np.int64)[order]
    quantity = column("quantity", np.nan, np.float64)[order]
    value = column("value", np.nan, np.float64)[order]
    purpose = column("purpose", -1, np.int8)[order]
    n = len(order)

    new_event = line == 0
    event_no = state.next_event + np.cumsum(new_event) - 1
    state.next_event += int(new_event.sum())
    is_purchase = etype == _PURCHASE
    new_order = is_purchase & new_event
    n_orders = int(new_order.sum())
    order_ids = _ascending_ids("o", state.next_order + np.arange(n_orders, dtype=np.int64))
    state.next_order += n_orders

    has_session = sess >= 0
    safe_sess = np.where(has_session, sess, 0)
    n_sessions = len(sessions["start"])
    # Session ids follow session start times within the chunk.
    session_rank = np.empty(n_sessions, dtype=np.int64)
    session_rank[np.argsort(sessions["start"], kind="stable")] = np.arange(n_sessions)
    session_ids = _ascending_ids("s", state.next_session + np.arange(n_sessions, dtype=np.int64))
    has_item = item >= 0
    has_money = (etype == _CART) | (etype == _REMOVE) | is_purchase
    is_consent = etype == _CONSENT
    price = world.truth.item_price[np.where(has_item, item, 0)]
    zeros = np.zeros(n, dtype=np.int32)

    arrays: dict[str, pa.Array] = {
        "event_id": _ascending_ids(f"sim{config.seed}-", event_no),
        "line": _primitive(line, pa.int64()),
        "event_type": _dictionary(etype, pa.array(_EVENT_TYPES)),
        "occurred_at": _primitive(when, _TIMESTAMP),
        "subject_id": _compact_dictionary(user, world.user_ids),
        "session_id": _dictionary(session_rank[safe_sess], session_ids, has_session),
        "device_type": _dictionary(sessions["device"][safe_sess], world.devices, has_session),
        "channel": _dictionary(sessions["channel"][safe_sess], world.channels, has_session),
        "country": _dictionary(world.user_country[user], world.countries),
        "item_id": _compact_dictionary(item, world.item_ids, has_item),
        "order_id": _dictionary(np.cumsum(new_order) - 1, order_ids, is_purchase),
        "quantity": _primitive(quantity, pa.float64(), ~np.isnan(quantity)),
        "price": _primitive(price, pa.float64(), has_money),
        "currency": _dictionary(zeros, pa.array(["EUR"]), has_money),
        "value": _primitive(value, pa.float64(), ~np.isnan(value)),
        "purpose": _dictionary(purpose, pa.array(_CONSENT_PURPOSES), is_consent),
        # Grants sit at a session start; revocations are the consent rows without a session.
        "granted": _primitive(has_session, pa.bool_(), is_consent),
        "policy_version": _dictionary(zeros, pa.array([config.policy_version]), is_consent),
    }
    return pa.Table.from_arrays(
        [arrays[f.name] if f.name in arrays else world.nulls(n, f.type) for f in _WRITE_SCHEMA],
        schema=_WRITE_SCHEMA,
    )


# --- public API -------------------------------------------------------------------------------


def iter_shop_events(config: ShopConfig) -> Iterator[pa.Table]:
    """Generate the events chunk by chunk, in time order.

    Parameters
    ----------
    config : what to simulate (validated first).

    Yields
    ------
    pyarrow.Table
        Import-ready chunks in :data:`~tailor.events.columns.EVENT_SCHEMA` (raw subject,
        session and item ids, no ``received_at``) of about ``config.chunk_rows`` rows each.

    Raises
    ------
    ShopConfigError
        If a config field is invalid.
    """
    for table in _iter_tables(_build_world(config)):
        yield conform_events(table)


def shop_truth(config: ShopConfig) -> ShopTruth:
    """The ground truth behind :func:`iter_shop_events` for the same config.

    Raises
    ------
    ShopConfigError
        If a config field is invalid.
    """
    config.validate()
    return _build_truth(config)


def shop_items(config: ShopConfig) -> pa.Table:
    """The items entity table (``ENTITIES["items"]``) of the simulated catalog.

    Titles combine an adjective, the leaf category and a model number; descriptions are a
    sentence from the top-level category's vocabulary (material, feature, use), so text
    similarity follows the category structure. ``available`` is the state at the end of the
    period (see :func:`shop_item_changes`).
    """
    return _items_table(_build_world(config))


def shop_users(config: ShopConfig) -> pa.Table:
    """The users entity table: ids and non-identifying attributes.

    ``attributes`` holds ``segment_truth`` (the user's main preferred category path) and
    ``activity`` (``low``/``medium``/``high`` tercile of the true session rate).
    """
    return _users_table(_build_world(config))


def shop_item_changes(config: ShopConfig) -> pa.Table:
    """The availability change log: ``time``, ``item_id``, ``available``, ordered by time.

    Every item is available at the start; an item is unavailable from a ``False`` change until
    its next ``True`` change. No view, cart or purchase of an item falls in such a gap.
    """
    return _item_changes_table(_build_world(config))


def simulate_shop(config: ShopConfig) -> Dataset:
    """The whole simulation in memory (for tests and demos; use :func:`write_shop` at scale).

    Returns
    -------
    Dataset
        ``events``, ``users`` and ``items``; see :func:`shop_truth` and
        :func:`shop_item_changes` for the rest.
    """
    world = _build_world(config)
    chunks = [conform_events(t) for t in _iter_tables(world)]
    events = pa.concat_tables(chunks) if chunks else EVENT_SCHEMA.empty_table()
    return Dataset(
        name=f"shop-sim-{config.seed}",
        events=events,
        users=_users_table(world),
        items=_items_table(world),
        notes=[
            f"Simulated shop: {config.users} users, {config.items} items, "
            f"{config.days} days from {config.start.isoformat()}, seed {config.seed}.",
            "Ground truth: tailor.datasets.simulate.shop.shop_truth(config).",
        ],
    )


@dataclass(frozen=True)
class SimulationSummary:
    """What :func:`write_shop` wrote.

    Attributes
    ----------
    rows : event rows written.
    users, items : entity rows written.
    seconds : wall time of the whole call.
    paths : ``events``, ``items``, ``users``, ``item_changes`` and ``truth`` file paths.
    """

    rows: int
    users: int
    items: int
    seconds: float
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        """Event rows written per second of the whole call."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def shop_paths(out: Path) -> dict[str, Path]:
    """Where :func:`write_shop` puts each file for the events path ``out``."""
    out = Path(out)
    stem = out.stem if out.suffix else out.name
    return {
        "events": out,
        "items": out.with_name(f"{stem}.items.parquet"),
        "users": out.with_name(f"{stem}.users.parquet"),
        "item_changes": out.with_name(f"{stem}.item_changes.parquet"),
        "truth": out.with_name(f"{stem}.truth.npz"),
    }


def write_shop(config: ShopConfig, out: Path, *, progress: bool = True) -> SimulationSummary:
    """Simulate and write everything to Parquet, in bounded memory.

    Events go to ``out`` (zstd Parquet, one row group per chunk, readable as
    :data:`~tailor.events.columns.EVENT_SCHEMA`), and beside it ``<stem>.items.parquet``,
    ``<stem>.users.parquet``, ``<stem>.item_changes.parquet`` and ``<stem>.truth.npz`` (the
    :class:`ShopTruth` arrays, see :func:`load_truth`). A background thread writes each chunk
    while the next one is generated.

    Parameters
    ----------
    config : what to simulate.
    out : the events file; its folder is created.
    progress : show a progress bar (rows written / target) on the terminal.

    Returns
    -------
    SimulationSummary

    Raises
    ------
    ShopConfigError
        If a config field is invalid (nothing is written).
    OSError
        If a file cannot be written; a partial events file is removed.
    """
    started = time.perf_counter()
    world = _build_world(config)
    paths = shop_paths(out)
    paths["events"].parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    writer = pq.ParquetWriter(
        paths["events"],
        _WRITE_SCHEMA,
        compression="zstd",
        # Without the Arrow schema readers see plain strings, i.e. exactly EVENT_SCHEMA.
        store_schema=False,
        use_dictionary=sorted(_DICTIONARY_COLUMNS),
        # Statistics of dictionary columns cost more than they save; time ranges matter.
        write_statistics=["occurred_at", "line"],
        column_encoding={"occurred_at": "DELTA_BINARY_PACKED", "line": "DELTA_BINARY_PACKED"},
    )
    try:
        with _progress_bar(progress, config.events) as advance:
            background = _BackgroundWriter(writer, advance)
            try:
                for table in _iter_tables(world):
                    background.put(table)
                    rows += table.num_rows
            finally:
                background.close()
        writer.close()
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        paths["events"].unlink(missing_ok=True)
        raise
    pq.write_table(_items_table(world), paths["items"], compression="zstd")
    pq.write_table(_users_table(world), paths["users"], compression="zstd")
    pq.write_table(_item_changes_table(world), paths["item_changes"], compression="zstd")
    truth = world.truth
    np.savez(
        paths["truth"],
        **{f.name: getattr(truth, f.name) for f in fields(ShopTruth) if f.name != "categories"},
        categories=np.array(truth.categories),
    )
    return SimulationSummary(
        rows=rows,
        users=config.users,
        items=config.items,
        seconds=time.perf_counter() - started,
        paths=paths,
    )


def load_truth(path: Path) -> ShopTruth:
    """Read a ``<stem>.truth.npz`` written by :func:`write_shop`.

    Parameters
    ----------
    path : the ``.npz`` file.

    Returns
    -------
    ShopTruth
    """
    with np.load(path, allow_pickle=False) as data:
        arrays = {f.name: data[f.name] for f in fields(ShopTruth) if f.name != "categories"}
        return ShopTruth(**arrays, categories=tuple(str(c) for c in data["categories"]))


class _BackgroundWriter:
    """Writes tables on a thread (Parquet encoding releases the GIL) through a short queue.

    A write error is kept and raised in the generating thread at its next ``put`` or at
    ``close``; the thread keeps draining the queue so that ``put`` never blocks forever.
    """

    def __init__(self, writer: pq.ParquetWriter, written: Callable[[int], None]) -> None:
        self._writer = writer
        self._written = written
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="shop-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (table := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
                    self._written(table.num_rows)
                except BaseException as exc:
                    self._error = exc

    def put(self, table: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def close(self) -> None:
        """Wait for the queued writes; raise a write error if there was one."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar of rows written out of ``total``; yields ``advance(rows)``."""
    if not enabled:
        yield lambda rows: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]simulating shop events"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task("events", total=total)
        yield lambda rows: bar.advance(task, rows)


# --- entity tables ----------------------------------------------------------------------------


def _items_table(world: _World) -> pa.Table:
    config, truth = world.config, world.truth
    rng = np.random.default_rng([config.seed, 5])
    names, vocab = _category_names(config)
    leaf = [name.split(ITEM_CATEGORY_SEPARATOR, 1)[1] for name in names]
    base_leaf = [re.sub(r" \d+$", "", name) for name in leaf]
    n = config.items
    cat = truth.item_category
    adjective = rng.integers(0, len(_ADJECTIVES), n)
    adjective2 = rng.integers(0, len(_ADJECTIVES), n)
    number = rng.integers(100, 1000, n)
    pick = rng.integers(0, 1 << 30, (n, 5))
    titles: list[str] = []
    descriptions: list[str] = []
    brands: list[str] = []
    colors: list[str] = []
    rows = zip(
        cat.tolist(), adjective.tolist(), adjective2.tolist(), number.tolist(), pick.tolist(),
        strict=True,
    )  # fmt: skip
    for c, a, a2, num, (m, f, u, b, col) in rows:
        v = int(vocab[c])
        materials, features, uses, brand_list = _MATERIALS[v], _FEATURES[v], _USES[v], _BRANDS[v]
        titles.append(f"{_ADJECTIVES[a]} {leaf[c]} {num}")
        descriptions.append(
            f"{_ADJECTIVES[a2]} {base_leaf[c].lower()} made of {materials[m % len(materials)]} "
            f"with {features[f % len(features)]}, ideal for {uses[u % len(uses)]}."
        )
        # Each category leans to a few brands of its vocabulary.
        brands.append(brand_list[(c + (b % 3) * (b % 2)) % len(brand_list)])
        colors.append(f'{{"color":"{_COLORS[col % len(_COLORS)]}"}}')
    available = np.ones(n, dtype=bool)
    if len(world.change_item):
        # The log is sorted by (item, time): an item's last change is its final state.
        last = np.concatenate([world.change_item[1:] != world.change_item[:-1], [True]])
        available[world.change_item[last]] = world.change_available[last]
    created = world.t0 - (rng.random(n) * 730 * 86_400 * _MICROS).astype(np.int64) - _MICROS
    table = pa.table(
        {
            "item_id": world.item_ids,
            "title": pa.array(titles),
            "description": pa.array(descriptions),
            "category": pa.array(names).take(cat),
            "brand": pa.array(brands),
            "price": pa.array(truth.item_price),
            "currency": pa.array(["EUR"] * n),
            "available": pa.array(available),
            "active": pa.array(np.ones(n, dtype=bool)),
            "created_at": pa.array(created, _TIMESTAMP),
            "attributes": pa.array(colors),
        }
    )
    return conform_entities("items", table)


def _users_table(world: _World) -> pa.Table:
    truth = world.truth
    names = truth.categories
    # Terciles of the true session rate.
    cuts = np.quantile(truth.user_activity, [1 / 3, 2 / 3])
    level = np.searchsorted(cuts, truth.user_activity, side="right")
    labels = ("low", "medium", "high")
    combos = pa.array(
        [
            json.dumps({"segment_truth": name, "activity": label}, separators=(",", ":"))
            for name in names
            for label in labels
        ]
    )
    attributes = combos.take(truth.user_preferred_category * 3 + level)
    table = pa.table({"user_id": world.user_ids, "attributes": attributes})
    return conform_entities("users", table)


def _item_changes_table(world: _World) -> pa.Table:
    order = np.lexsort((world.change_item, world.change_second))
    seconds = world.change_second[order]
    return pa.table(
        {
            "time": pa.array(world.t0 + seconds * _MICROS, _TIMESTAMP),
            "item_id": world.item_ids.take(world.change_item[order]),
            "available": pa.array(world.change_available[order]),
        }
    )
