"""Fit LightFM on an interaction matrix for each of a list of settings and save each fit's
top-k items per user. Standalone benchmark runner: it runs in its own virtual environment (see
the README's recommendation benchmark) and must not import project code.

Usage::

    /tmp/lfm/bin/python bench/_lightfm.py --matrix IN.npz --params '[{...}, ...]' --k 10 \\
        --out OUT.npz

``IN.npz`` holds a users x items CSR matrix (``data``, ``indices``, ``indptr``, ``shape``); every
nonzero is an interaction (LightFM learns from which cells are set, as the other implicit
models here do). Each entry of ``--params`` is one setting: ``no_components``, ``loss``,
``learning_rate``, ``item_alpha`` (also used as ``user_alpha``) and ``epochs``. ``OUT.npz``
gets ``top_{i}`` (users x k item indices, best first, the matrix's own items excluded, -1 where
a user has fewer unseen items) and ``fit_s`` (seconds per fit). The last line of stdout is a
JSON summary; everything else goes to stderr.
"""

import argparse
import json
import sys
import time

import lightfm
import numpy as np
import scipy.sparse as sp
from lightfm import LightFM


def top_k(model: LightFM, seen: sp.csr_matrix, k: int, threads: int) -> np.ndarray:
    n_users, n_items = seen.shape
    items = np.arange(n_items, dtype=np.int32)
    top = np.full((n_users, k), -1, dtype=np.int64)
    for start in range(0, n_users, 512):  # a block of users at a time bounds the memory
        users = np.arange(start, min(start + 512, n_users), dtype=np.int32)
        scores = model.predict(
            np.repeat(users, n_items), np.tile(items, len(users)), num_threads=threads
        ).reshape(len(users), n_items)
        block = seen[users]
        rows = np.repeat(np.arange(len(users)), np.diff(block.indptr))
        scores[rows, block.indices] = -np.inf
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        finite = np.isfinite(np.take_along_axis(scores, best, axis=1))
        top[users] = np.where(finite, best, -1)
    return top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--matrix", required=True)
    parser.add_argument("--params", required=True, help="a JSON list of settings")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    stored = np.load(args.matrix)
    matrix = sp.csr_matrix(
        (stored["data"], stored["indices"], stored["indptr"]), shape=tuple(stored["shape"])
    )
    binary = matrix.copy()
    binary.data[:] = 1.0
    coo = binary.tocoo()
    out, seconds = {}, []
    for i, params in enumerate(json.loads(args.params)):
        model = LightFM(
            no_components=params["no_components"],
            loss=params["loss"],
            learning_rate=params["learning_rate"],
            item_alpha=params["item_alpha"],
            user_alpha=params["item_alpha"],
            random_state=args.seed,
        )
        started = time.perf_counter()
        model.fit(coo, epochs=params["epochs"], num_threads=args.threads)
        seconds.append(time.perf_counter() - started)
        out[f"top_{i}"] = top_k(model, binary, args.k, args.threads)
        print(f"LightFM {params}: {seconds[-1]:.2f} s", file=sys.stderr)
    np.savez(args.out, fit_s=np.asarray(seconds), **out)
    print(json.dumps({"lightfm": lightfm.__version__, "fits": len(seconds)}))


if __name__ == "__main__":
    main()
