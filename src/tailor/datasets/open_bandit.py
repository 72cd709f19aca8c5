"""Open Bandit Dataset sample (ZOZOTOWN fashion e-commerce, Saito et al. 2020).

Logs of two recommendation policies run side by side in November 2019 -- uniform ``random``
and Bernoulli Thompson sampling (``bts``) -- on three campaigns (``all``, ``men``,
``women``), 10,000 rows each in the sample shipped with ``obp``. A row is one item shown at one
of three positions, whether it was clicked, and the probability (propensity) the policy had of
showing it there, which is what off-policy evaluation needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tailor.datasets.base import Dataset, dataset_path

CITATION = (
    "Saito, Y., Aihara, S., Matsutani, M. and Narita, Y. (2021). Open Bandit Dataset and "
    "Pipeline: Towards Realistic and Reproducible Off-Policy Evaluation. NeurIPS Datasets and "
    "Benchmarks. https://arxiv.org/abs/2008.07146 (sample from obp, Apache-2.0; full data "
    "CC BY 4.0)"
)

POLICIES: tuple[str, ...] = ("random", "bts")
CAMPAIGNS: tuple[str, ...] = ("all", "men", "women")
USER_FEATURES: tuple[str, ...] = tuple(f"user_feature_{i}" for i in range(4))


def item_id(campaign: str, item: int) -> str:
    """The catalog id of an OBD item. Item numbers restart in each campaign, so the campaign is
    part of the id; both policies of a campaign show the same items and share these ids."""
    return f"obd-{campaign}-item{item}"


def _compact(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"))


def _folder(path: str | Path | None, policy: str, campaign: str) -> Path:
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if campaign not in CAMPAIGNS:
        raise ValueError(f"unknown campaign {campaign!r}; expected one of {', '.join(CAMPAIGNS)}")
    if path is None:
        return dataset_path("open-bandit-sample", policy, campaign)
    return Path(path) / policy / campaign


def read_log(
    path: str | Path | None = None, *, policy: str = "random", campaign: str = "all"
) -> pa.Table:
    """One policy/campaign log as it is: the row index (column ``""``), ``timestamp``,
    ``item_id`` (the campaign's item number), ``position`` (1-3), ``click`` (0/1),
    ``propensity_score`` and the four hashed user features; what off-policy evaluation
    reads (``path`` as in :func:`load_open_bandit`)."""
    folder = _folder(path, policy, campaign)
    wanted = ["", "timestamp", "item_id", "position", "click", "propensity_score", *USER_FEATURES]
    log_file = folder / f"{campaign}.csv"
    try:
        return pacsv.read_csv(
            log_file,
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={"timestamp": pa.timestamp("us", tz="UTC"), "": pa.int64()},
            ),
        )
    except (pa.ArrowInvalid, KeyError) as exc:  # a missing column, a value of the wrong type
        raise ValueError(
            f"{log_file} is not an Open Bandit log ({exc}); expected the columns "
            f"{', '.join(repr(c) for c in wanted)}"
        ) from None


def load_open_bandit(
    path: str | Path | None = None, *, policy: str = "random", campaign: str = "all"
) -> Dataset:
    """Load one policy/campaign log of the Open Bandit sample as impressions and clicks.

    Parameters
    ----------
    path : the ``open-bandit-sample`` folder (holding ``{policy}/{campaign}/``); default the
        one below :func:`~tailor.datasets.base.data_dir`.
    policy : ``"random"`` (uniform random logging policy) or ``"bts"`` (Bernoulli Thompson
        sampling).
    campaign : ``"all"``, ``"men"`` or ``"women"``.

    Returns
    -------
    Dataset
        ``events``: for log row ``r`` (the file's index column) one single-line
        ``impression``, ``event_id = "obd-{policy}-{campaign}-{r}-impression"``, of the item
        shown (``item_id`` = :func:`item_id`), ``recommendation_id = subject_id =
        "obd-{policy}-{campaign}-{r}"``, ``occurred_at`` = the log's ``timestamp`` and
        ``properties = {"policy", "campaign", "position", "propensity_score",
        "user_features"}`` (position 1-3 as logged, the four hashed user features); plus,
        where ``click == 1``, a ``click`` (``event_id`` ending ``-click``) on the same item
        with the same recommendation id, subject and time (the log has no click time) and
        ``properties = {"position"}``.

        ``items``: one per row of ``item_context.csv``, ``attributes`` = its
        ``item_feature_*`` values, ``available``/``active`` true.

        No users: the logs carry no user id (see ``notes``).
    """
    folder = _folder(path, policy, campaign)
    log = read_log(path, policy=policy, campaign=campaign)
    rows = log[""].to_pylist()
    items_shown = log["item_id"].to_pylist()
    positions = log["position"].to_pylist()
    propensities = log["propensity_score"].to_pylist()
    features = list(zip(*(log[c].to_pylist() for c in USER_FEATURES), strict=True))
    prefix = f"obd-{policy}-{campaign}-"
    keys = [f"{prefix}{r}" for r in rows]
    item_ids = [item_id(campaign, i) for i in items_shown]
    impressions = pa.table(
        {
            "event_id": [f"{k}-impression" for k in keys],
            "event_type": pa.repeat("impression", len(keys)),
            "occurred_at": log["timestamp"],
            "subject_id": keys,
            "item_id": item_ids,
            "recommendation_id": keys,
            "properties": [
                _compact(
                    {
                        "policy": policy,
                        "campaign": campaign,
                        "position": pos,
                        "propensity_score": p,
                        "user_features": list(f),
                    }
                )
                for pos, p, f in zip(positions, propensities, features, strict=True)
            ],
        }
    )
    clicked = pc.equal(log["click"], 1)
    click_keys = [k for k, c in zip(keys, clicked.to_pylist(), strict=True) if c]
    clicks = pa.table(
        {
            "event_id": [f"{k}-click" for k in click_keys],
            "event_type": pa.repeat("click", len(click_keys)),
            "occurred_at": log["timestamp"].filter(clicked),
            "subject_id": click_keys,
            "item_id": pc.filter(pa.array(item_ids), clicked),
            "recommendation_id": click_keys,
            "properties": [
                _compact({"position": p}) for p in log["position"].filter(clicked).to_pylist()
            ],
        }
    )
    events = pa.concat_tables([impressions, clicks]).append_column(
        "line", pa.repeat(0, impressions.num_rows + clicks.num_rows).cast(pa.int64())
    )

    context = pacsv.read_csv(folder / "item_context.csv")
    feature_names = [n for n in context.column_names if n.startswith("item_feature_")]
    feature_values = [context[n].to_pylist() for n in feature_names]
    n_items = context.num_rows
    items = pa.table(
        {
            "item_id": [item_id(campaign, i) for i in context["item_id"].to_pylist()],
            "attributes": [
                _compact({n: v[i] for n, v in zip(feature_names, feature_values, strict=True)})
                for i in range(n_items)
            ],
            "available": pa.repeat(True, n_items),
            "active": pa.repeat(True, n_items),
        }
    )
    return Dataset(
        name=f"open-bandit-{policy}" + ("" if campaign == "all" else f"-{campaign}"),
        events=events,
        items=items,
        citation=CITATION,
        notes=[
            f"{log.num_rows:,} impressions and {clicks.num_rows:,} clicks of the {policy} "
            f"policy, campaign {campaign}.",
            "The logs carry no user id: each log row is its own anonymous subject "
            f"('{prefix}<row>'), so no user history can be built; the hashed user features "
            "are kept in the impression's properties.",
            "Each log row is one item at one position (a single-line impression); the three "
            "positions of one page view are not linked in the logs.",
            "The user-item affinity columns are not kept. Categorical item features are "
            "hashed separately per policy, so the two policies' item attributes differ in "
            "form though the items are the same.",
        ],
    )
