"""The LambdaMART hybrid learns from held-back interactions and serves its candidates."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tailor.recommend.hybrid import Hybrid

from .test_models import two_tastes

GENERATORS = {"ease": {"l2": 10.0}, "itemknn": {"neighbors": 20, "shrink": 1.0}}


def test_hybrid_learns_and_recommends_within_the_users_taste():
    full = two_tastes(seed=1)
    rng = np.random.default_rng(0)
    held = full.copy()
    held.data = (rng.random(held.nnz) < 0.25).astype(np.float32)
    held.eliminate_zeros()
    fit_part = full - held
    fit_part.eliminate_zeros()
    model = Hybrid(generators=GENERATORS, candidates=10, trees=20).fit_stages(fit_part, held, full)
    assert model.feature_names_[:2] == ["ease_score", "ease_rank"]
    ids, scores = model.recommend(full, k=5, users=np.arange(60))
    assert ((ids[:30] < 20).mean() + (ids[30:] >= 20).mean()) / 2 > 0.9
    assert np.isfinite(scores).all()
    for user in range(60):
        assert not set(ids[user]) & set(full[user].indices)


def test_hybrid_needs_generators_and_two_parts():
    x = two_tastes()
    with pytest.raises(ValueError, match="generators must name"):
        Hybrid().fit_stages(x, x, x)
    with pytest.raises(TypeError, match="fit_stages"):
        Hybrid(generators=GENERATORS).fit(x)
    with pytest.raises(ValueError, match="share their users × items shape"):
        Hybrid(generators=GENERATORS).fit_stages(x, x[:10], x)
    # A user of the first taste holds back an item of the other: never among 2 candidates.
    nothing = sp.csr_matrix((np.ones(1, np.float32), ([0], [39])), shape=x.shape)
    with pytest.raises(ValueError, match="nothing to learn from"):
        Hybrid(generators=GENERATORS, candidates=2).fit_stages(x, nothing, x)


def test_hybrid_saves_its_generators_and_ranker_in_one_file(tmp_path):
    from tailor.recommend import load_model

    full = two_tastes(seed=2)
    held = full.copy()
    held.data = (np.arange(held.nnz) % 4 == 0).astype(np.float32)
    held.eliminate_zeros()
    fit_part = full - held
    fit_part.eliminate_zeros()
    model = Hybrid(generators=GENERATORS, candidates=10, trees=10).fit_stages(fit_part, held, full)
    loaded = load_model(model.save(tmp_path / "hybrid.npz"))
    assert isinstance(loaded, Hybrid) and set(loaded.models_) == set(GENERATORS)
    users = np.arange(60)
    np.testing.assert_allclose(loaded.score(full, users), model.score(full, users), rtol=1e-5)
