"""Recommendation benchmark: tailor's tuned models against the peers a user would pick instead.

Protocols:

* ``msr-ml100k`` (default): MovieLens 100K, random 75/25 split of each user's ratings (seed
  42), rank every item the user has not rated in train, top ``k`` (the Microsoft Recommenders
  protocol whose published table is in ``../shared/data/README.md``);
* ``temporal``: a global time cut-off, the last 20% of interactions are the test;
* ``leave-last-out``: each user's latest interaction is the test.

``temporal`` and ``leave-last-out`` read ``--interactions PATH`` (CSV or Parquet; columns from
``--user-col``, ``--item-col``, ``--time-col``, optional ``--weight-col``) or, without one, the
Online Retail II purchases from ``../shared/data`` (or ``$TAILOR_DATA``).

Every model is tuned on a validation split carved out of the training rows (a random quarter
of each user's training interactions, or the training rows' own latest 20% / latest
interaction for the time-based protocols); the test rows are used once, at the end. Peers:
``implicit``'s ALS with its defaults, the same ALS tuned with the same search budget as ours
(the fair peer), and popularity; with ``--lightfm-python PATH`` (a side environment, see the
README), LightFM with WARP loss tuned the same way (``bench/_lightfm.py`` fits it there).
Usage: ``python -m bench.recommend [--protocol P] [--k 10] [--budget 24]
[--models ease,itemknn,...] [--lightfm-python PATH]``. Last line: one JSON object with the
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from tailor.recommend import InteractionLog
from tailor.recommend.base import Recommender, distinct_users
from tailor.recommend.catalog import Catalog
from tailor.recommend.evaluation import DEFAULT_MODELS, evaluate_recommenders, test_metrics
from tailor.recommend.interaction_files import read_interactions
from tailor.recommend.tuning import GRIDS, tune

console = Console(stderr=True)


def load_log(args: argparse.Namespace) -> tuple[InteractionLog, Catalog | None]:
    """The interactions and, for a bundled dataset, its catalog aligned with their item codes
    (the hybrid's catalog features; None for an interactions file, which has no item table)."""
    if args.protocol == "msr-ml100k":
        from tailor.datasets.movielens import load_movielens_100k

        dataset = load_movielens_100k(args.data)
        log = InteractionLog.from_events(dataset.events)
        # MovieLens joins genres with "|": as category levels, the first genre is the top one.
        return log, Catalog.from_table(dataset.items, log.item_ids, category_separator="|")
    if args.interactions is None:
        from tailor.datasets.online_retail import load_online_retail

        dataset = load_online_retail(args.data)
        log = InteractionLog.from_events(dataset.events)
        items = getattr(dataset, "items", None)
        return log, None if items is None else Catalog.from_table(items, log.item_ids)
    try:
        log = read_interactions(
            args.interactions,
            user_col=args.user_col,
            item_col=args.item_col,
            time_col=args.time_col,
            weight_col=args.weight_col,
        )
    except ValueError as exc:
        raise SystemExit(f"--interactions {exc}") from exc
    return log, None


def implicit_als(**params: Any):
    from implicit.cpu.als import AlternatingLeastSquares

    with threadpool_limits(1, "blas"):
        return AlternatingLeastSquares(random_state=42, **params)


def implicit_top_k(model, seen: sp.csr_matrix, k: int) -> np.ndarray:
    users = np.arange(seen.shape[0])
    ids, scores = model.recommend(users, seen, N=k, filter_already_liked_items=True)
    ids = np.asarray(ids, dtype=np.int64)
    ids[~np.isfinite(scores)] = -1
    return ids


def fit_implicit(params: dict[str, Any], train: sp.csr_matrix):
    model = implicit_als(**params)
    with threadpool_limits(1, "blas"):
        model.fit(train, show_progress=False)
    return model


LIGHTFM_GRID: dict[str, list[Any]] = {
    "loss": ["warp"],
    "no_components": [16, 32, 64, 128],
    "learning_rate": [0.01, 0.05, 0.1],
    "item_alpha": [0.0, 1e-6, 1e-5],
    "epochs": [10, 30, 60],
}
"""LightFM's settings, sampled with the same budget as every other model (WARP: its authors'
choice for top-k ranking from implicit feedback)."""


def lightfm_tops(
    python: str, matrix: sp.csr_matrix, settings: list[dict[str, Any]], k: int
) -> tuple[list[np.ndarray], list[float]]:
    """Each setting's top ``k`` per user after a LightFM fit on ``matrix``, from the side
    environment ``python`` (``bench/_lightfm.py``), and each fit's seconds."""
    import subprocess
    import tempfile
    from pathlib import Path

    runner = Path(__file__).with_name("_lightfm.py")
    with tempfile.TemporaryDirectory(prefix="tailor-lightfm-") as folder:
        source, target = Path(folder) / "in.npz", Path(folder) / "out.npz"
        csr = matrix.tocsr()
        np.savez(source, data=csr.data, indices=csr.indices, indptr=csr.indptr, shape=csr.shape)
        done = subprocess.run(
            [python, str(runner), "--matrix", str(source), "--params", json.dumps(settings),
             "--k", str(k), "--out", str(target)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{python} exited with {done.returncode}: {done.stderr[-2000:]}")
        stored = np.load(target)
        return [stored[f"top_{i}"] for i in range(len(settings))], stored["fit_s"].tolist()


def lightfm_peer(
    python: str | None,
    splits: Any,
    *,
    k: int,
    budget: int,
    seed: int,
    popularity: np.ndarray,
) -> dict[str, Any] | None:
    """LightFM (WARP) tuned like the others: each sampled setting fitted on the fit part and
    scored on validation by tailor's metrics, the best refitted on all training rows and
    scored once on the test rows. None without a side environment, or when it fails."""
    if not python:
        return None
    from tailor.evaluate import ranking_metrics
    from tailor.recommend.tuning import grid_points

    settings = grid_points(LIGHTFM_GRID, budget=budget, seed=seed)
    try:
        tops, _ = lightfm_tops(python, splits.fit_part, settings, k)
        scored = [ranking_metrics(top, splits.validation, k=k).ndcg for top in tops]
        best = int(np.argmax(scored))
        (top,), (fit_s,) = lightfm_tops(python, splits.train, [settings[best]], k)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        console.print(f"[yellow]LightFM failed[/yellow]: {exc}")
        return None
    metrics = test_metrics(top, splits.test, k, popularity)
    return {
        "metrics": metrics | {"fit_s": round(fit_s, 3)},
        "params": settings[best],
        "validation_ndcg": round(scored[best], 4),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.recommend", description=__doc__)
    parser.add_argument(
        "--protocol", choices=["msr-ml100k", "temporal", "leave-last-out"], default="msr-ml100k"
    )
    parser.add_argument("--interactions", help="CSV or Parquet of interactions")
    parser.add_argument("--user-col", default="user_id")
    parser.add_argument("--item-col", default="item_id")
    parser.add_argument("--time-col", default="timestamp")
    parser.add_argument("--weight-col")
    parser.add_argument("--data", help="dataset folder (default: ../shared/data or $TAILOR_DATA)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--budget", type=int, default=24, help="grid points tried per model")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--lightfm-python",
        default=os.environ.get("TAILOR_LIGHTFM_PYTHON"),
        help="the python of a side environment with LightFM, to add it as a peer (see the "
        "README: python3 -m venv /tmp/lfm && /tmp/lfm/bin/pip install setuptools wheel "
        "numpy scipy cython && /tmp/lfm/bin/pip install --no-build-isolation lightfm)",
    )
    parser.add_argument(
        "--context",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give the hybrid's ranker the catalog (price, category, age) and time features",
    )
    args = parser.parse_args(argv)
    if args.interactions and args.protocol == "msr-ml100k":
        parser.error("--interactions goes with --protocol temporal or leave-last-out")
    if args.k < 1 or args.budget < 1:
        parser.error("--k and --budget must be at least 1")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in GRIDS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(GRIDS)}")

    log, catalog = load_log(args)
    protocol = "random" if args.protocol == "msr-ml100k" else args.protocol
    try:
        evaluation = evaluate_recommenders(
            log,
            protocol=protocol,
            k=args.k,
            budget=args.budget,
            models=names,
            seed=args.seed,
            progress=lambda message: console.print(f"{message} ..."),
            catalog=catalog if args.context else None,
            hybrid_times=args.context,
        )
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    splits = evaluation.splits
    train, test, fit_part, validation = (
        splits.train,
        splits.test,
        splits.fit_part,
        splits.validation,
    )
    popularity = distinct_users(train).astype(np.float64)
    console.print(
        f"{args.protocol}: {log.n_users:,} users, {log.n_items:,} items, {len(log):,} "
        f"interactions; train {train.nnz:,}, test {test.nnz:,}, validation {validation.nnz:,}"
    )
    results = {name: report.as_dict() for name, report in evaluation.reports.items()}
    tuned = {name: report.params for name, report in evaluation.reports.items()}

    console.print("peers: implicit ALS with defaults, and tuned with the same budget ...")
    started = time.perf_counter()
    default_als = fit_implicit({}, train)
    default_fit = time.perf_counter() - started
    peer_default = test_metrics(
        implicit_top_k(default_als, train, args.k), test, args.k, popularity
    )
    results["peer_als_default"] = peer_default | {"fit_s": round(default_fit, 3)}
    peer_tuning = tune(
        lambda **p: fit_implicit(p, fit_part),
        implicit_top_k,
        GRIDS["als"],
        fit_part,
        validation,
        k=args.k,
        budget=args.budget,
    )
    started = time.perf_counter()
    peer_model = fit_implicit(peer_tuning.best_params, train)
    peer_fit = time.perf_counter() - started
    peer_tuned = test_metrics(implicit_top_k(peer_model, train, args.k), test, args.k, popularity)
    results["peer_als_tuned"] = peer_tuned | {"fit_s": round(peer_fit, 3)}
    tuned["peer_als_tuned"] = peer_tuning.best_params

    if args.lightfm_python:
        console.print("peer: LightFM (WARP), tuned with the same budget ...")
    lightfm = lightfm_peer(
        args.lightfm_python, splits, k=args.k, budget=args.budget, seed=args.seed,
        popularity=popularity,
    )  # fmt: skip
    if lightfm is not None:
        results["peer_lightfm_tuned"] = lightfm["metrics"]
        tuned["peer_lightfm_tuned"] = lightfm["params"]

    wrapper_overhead = None
    if "als" in tuned:
        # Same parameters through our wrapper and through implicit directly: a fit takes a
        # fraction of a second, so take the best of 7 each, interleaved, to see past noise.
        direct_params = {k: v for k, v in tuned["als"].items() if k != "seed"}
        ours, theirs = float("inf"), float("inf")
        for _ in range(7):
            ours = min(
                ours, _timed(lambda: Recommender._registry["als"](**tuned["als"]).fit(train))
            )
            theirs = min(theirs, _timed(lambda: fit_implicit(direct_params, train)))
        wrapper_overhead = round(ours / theirs - 1.0, 3)

    own = {n: r for n, r in results.items() if not n.startswith("peer_")}
    best = max(own, key=lambda n: own[n]["ndcg"])
    figures = {
        "bench": "recommend",
        "protocol": args.protocol,
        "k": args.k,
        "models": results,
        "best": best,
        "peer_als_ndcg": peer_default["ndcg"],
        "peer_als_tuned_ndcg": peer_tuned["ndcg"],
        "peer_lightfm_tuned_ndcg": None if lightfm is None else lightfm["metrics"]["ndcg"],
        "best_over_peer_als": round(own[best]["ndcg"] / peer_tuned["ndcg"], 3)
        if peer_tuned["ndcg"]
        else None,
        # What a shop would deploy: the best on validation (the test rows choose nothing).
        "chosen": evaluation.chosen,
        "chosen_over_peer_als": round(own[evaluation.chosen]["ndcg"] / peer_tuned["ndcg"], 3)
        if peer_tuned["ndcg"]
        else None,
        "als_wrapper_overhead": wrapper_overhead,
        "tuned": tuned,
        "validation_ndcg": evaluation.figures()["validation_ndcg"]
        | ({} if lightfm is None else {"peer_lightfm_tuned": lightfm["validation_ndcg"]}),
        "hybrid_features": evaluation.fitted["hybrid"].feature_names_
        if "hybrid" in evaluation.fitted
        else None,
    }
    table = Table(title=f"recommend: {args.protocol}, top {args.k}")
    for column in ("model", "nDCG", "MAP", "precision", "recall", "coverage", "fit s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['ndcg']:.4f}",
            f"{r['map']:.4f}",
            f"{r['precision']:.4f}",
            f"{r['recall']:.4f}",
            f"{r['coverage']:.3f}",
            f"{r['fit_s']:.2f}",
        )
    Console().print(table)
    for name, params in tuned.items():
        Console().print(f"  {name}: {params}")
    print(json.dumps(figures))
    return figures


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
