"""SASRec (Kang and McAuley, ICDM 2018): it learns a planted next-item pattern, keeps each
user's time order, scores unseen users and explicit sequences, survives save/load, and refuses
bad input (or a missing PyTorch) with a clear message."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("torch", reason="SASRec needs the [deep] extra (torch)")

import torch

from tailor.recommend import load_model
from tailor.recommend.interactions import InteractionLog
from tailor.recommend.models.sasrec import MissingDependencyError, SASRec

N_ITEMS = 20
N_USERS = 120
# Small enough to train in a few seconds on two busy cores, big enough to learn the cycle.
TINY = {
    "max_len": 8,
    "hidden": 16,
    "blocks": 1,
    "epochs": 30,
    "batch_size": 64,
    "learning_rate": 1e-2,
    "dropout": 0.1,
}


def cyclic_log(seed: int = 0) -> tuple[InteractionLog, np.ndarray]:
    """Each user walks the items cyclically (item i is always followed by i + 1 mod 20) from a
    random start for 4-10 steps. The rows are shuffled, so only the times give the order.
    Returns the log and each user's last item."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    last = np.empty(N_USERS, np.int64)
    for user in range(N_USERS):
        start, length = rng.integers(N_ITEMS), rng.integers(4, 11)
        walk = (start + np.arange(length)) % N_ITEMS
        users += [user] * length
        items += list(walk)
        times += list(1_000 * np.arange(length) + 10 * user)
        last[user] = walk[-1]
    shuffle = rng.permutation(len(users))
    log = InteractionLog.from_arrays(
        np.asarray(users)[shuffle],
        np.asarray(items)[shuffle],
        times=np.asarray(times)[shuffle],
        item_ids=np.arange(N_ITEMS),
    )
    return log, last


@pytest.fixture(scope="module")
def trained() -> tuple[SASRec, InteractionLog, np.ndarray]:
    log, last = cyclic_log()
    model = SASRec(**TINY).fit(log.matrix(), log=log)
    return model, log, last


def test_the_next_item_of_the_cycle_ranks_first(trained):
    model, log, last = trained
    ids, _ = model.recommend(log.matrix(), k=1, users=np.arange(N_USERS))
    hit_rate = np.mean(ids[:, 0] == (last + 1) % N_ITEMS)
    # Chance is about 1 in 14 (20 items less the 4-10 seen ones).
    assert hit_rate > 0.8, f"next item ranked first for only {hit_rate:.0%} of users"
    assert model.loss_history_[-1] < 0.5 * model.loss_history_[0]


def test_sequences_keep_the_last_items_in_time_order(trained):
    model, log, last = trained
    assert model.sequences_.shape == (N_USERS, 8) and model.sequences_.dtype == np.int32
    for user in range(N_USERS):
        stored = model.sequences_[user]
        real = stored[stored > 0] - 1
        length = int(np.sum(log.user == user))
        assert (stored[: 8 - len(real)] == 0).all(), "padding must come first"
        assert len(real) == min(length, 8)
        np.testing.assert_array_equal(real, (last[user] - np.arange(len(real))[::-1]) % N_ITEMS)


def test_equal_times_keep_row_order_and_repeats_count_once():
    # User "a": items 5, 5 (a view then a purchase), 3 and 7 at the same time, then 9.
    log = InteractionLog.from_arrays(
        np.array(["a", "a", "a", "a", "a", "b", "b"]),
        np.array([5, 5, 3, 7, 9, 1, 2]),
        times=np.array([0, 1, 2, 2, 3, 0, 1]),
        item_ids=np.arange(N_ITEMS),
    )
    model = SASRec(max_len=6, hidden=8, epochs=1).fit(log.matrix(), log=log)
    np.testing.assert_array_equal(model.sequences_[0], [0, 0, 6, 4, 8, 10])
    np.testing.assert_array_equal(model.sequences_[1], [0, 0, 0, 0, 2, 3])


def test_new_items_of_a_known_user_follow_the_stored_sequence(trained):
    model, log, last = trained
    history = log.matrix().tolil()
    users = np.arange(N_USERS)
    nxt = (last + 1) % N_ITEMS
    for user in users:
        history[user, nxt[user]] = 1.0
    ids, _ = model.recommend(history.tocsr(), k=1, users=users)
    # Users whose walk already passed nxt + 1 cannot be recommended it again.
    fresh = np.array([(n + 1) % N_ITEMS not in history.rows[u] for u, n in enumerate(nxt)])
    hit_rate = np.mean(ids[fresh, 0] == (nxt[fresh] + 1) % N_ITEMS)
    assert hit_rate > 0.8, f"the item after the new one ranked first for only {hit_rate:.0%}"


def test_an_unseen_user_is_ordered_by_ascending_weight(trained):
    model, *_ = trained
    # Item 4 lightest, then 5, then 6 reads as 4 → 5 → 6, so 7 comes next.
    history = sp.csr_matrix(
        (np.array([3.0, 1.0, 2.0], np.float32), ([0, 0, 0], [6, 4, 5])), shape=(1, N_ITEMS)
    )
    for users in (None, np.array([-1])):
        ids, _ = model.recommend(history, k=1, users=users)
        assert ids[0, 0] == 7


def test_score_sequences_uses_the_given_order(trained):
    model, *_ = trained
    scores = model.score_sequences([np.array([3, 4, 5]), np.array([17, 18]), np.array([], int)])
    assert scores.shape == (3, N_ITEMS) and scores.dtype == np.float32
    assert scores[0].argmax() == 6
    assert scores[1].argmax() == 19
    assert (scores[2] == 0).all(), "an empty sequence has nothing to score from"
    # A sequence longer than max_len counts only its last max_len items.
    long = np.arange(30) % N_ITEMS
    np.testing.assert_array_equal(model.score_sequences([long]), model.score_sequences([long[-8:]]))


def test_score_sequences_agrees_with_score_for_an_unseen_user(trained):
    model, *_ = trained
    history = sp.csr_matrix(
        (np.array([1.0, 2.0], np.float32), ([0, 0], [10, 11])), shape=(1, N_ITEMS)
    )
    np.testing.assert_allclose(
        model.score(history), model.score_sequences([np.array([10, 11])]), rtol=1e-6
    )


def test_save_and_load_give_the_same_scores(trained, tmp_path):
    model, log, _ = trained
    loaded = load_model(model.to_bytes())
    assert isinstance(loaded, SASRec) and loaded.get_params() == model.get_params()
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(
        loaded.score(log.matrix(), users), model.score(log.matrix(), users)
    )
    np.testing.assert_array_equal(loaded.sequences_, model.sequences_)
    # The file holds the network as plain arrays (np.load refuses pickles).
    with np.load(model.save(tmp_path / "sasrec.npz"), allow_pickle=False) as data:
        assert "net__items.weight" in data.files
        assert data["net__items.weight"].shape == (N_ITEMS + 1, 16)


def test_training_is_seeded_and_leaves_torch_as_it_found_it():
    log, _ = cyclic_log()
    small = {**TINY, "epochs": 2}
    threads = torch.get_num_threads()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    first = SASRec(**small).fit(log.matrix(), log=log)
    assert torch.equal(torch.rand(3), expected), "fit must not consume the caller's RNG"
    assert torch.get_num_threads() == threads
    second = SASRec(**small).fit(log.matrix(), log=log)
    for key, value in first.weights_.items():
        np.testing.assert_array_equal(value, second.weights_[key])


def test_bce_with_sampled_negatives_learns_too():
    log, _ = cyclic_log()
    model = SASRec(**{**TINY, "epochs": 10}, loss="bce", negatives=2).fit(log.matrix(), log=log)
    assert model.loss_history_[-1] < 0.8 * model.loss_history_[0]


def test_progress_reports_every_epoch():
    log, _ = cyclic_log()
    calls = []
    model = SASRec(**{**TINY, "epochs": 3})
    model.progress = lambda label, done, total: calls.append((label, done, total))
    model.fit(log.matrix(), log=log)
    assert calls == [("sasrec epochs", 1, 3), ("sasrec epochs", 2, 3), ("sasrec epochs", 3, 3)]
    assert "progress" not in model.get_params()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_len": 0}, "max_len must be an integer >= 1"),
        ({"hidden": 30, "heads": 4}, r"hidden \(30\) must be divisible by heads \(4\)"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
        ({"epochs": 2.5}, "epochs must be an integer >= 1"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"loss": "hinge"}, "loss must be one of"),
        ({"threads": 3}, "threads must be at most 2"),
    ],
)
def test_bad_hyperparameters_are_refused(params, message):
    log, _ = cyclic_log()
    with pytest.raises(ValueError, match=message):
        SASRec(**params).fit(log.matrix(), log=log)


def test_fit_needs_the_log():
    log, _ = cyclic_log()
    with pytest.raises(ValueError, match="SASRec needs log= to fit"):
        SASRec().fit(log.matrix())


def test_a_log_that_does_not_match_the_matrix_is_refused():
    log, _ = cyclic_log()
    with pytest.raises(ValueError, match="build the matrix from the same log"):
        SASRec().fit(log.matrix()[:, :10], log=log)


def test_users_without_a_sequence_are_refused():
    log = InteractionLog.from_arrays(np.array([0, 1]), np.array([0, 1]), times=np.array([0, 1]))
    with pytest.raises(ValueError, match="no user has two or more distinct consecutive items"):
        SASRec().fit(log.matrix(), log=log)


def test_score_sequences_refuses_bad_codes(trained):
    model, *_ = trained
    with pytest.raises(ValueError, match=r"sequences\[1\] has item codes outside \[0, 20\)"):
        model.score_sequences([np.array([1, 2]), np.array([3, 20])])
    with pytest.raises(ValueError, match=r"sequences\[0\] must be 1-D"):
        model.score_sequences([np.array([[1, 2]])])
    with pytest.raises(ValueError, match=r"sequences\[0\] must hold integer item codes"):
        model.score_sequences([np.array([1.5])])
    with pytest.raises(RuntimeError, match="not fitted"):
        SASRec().score_sequences([np.array([1])])


def test_a_missing_torch_gives_an_install_hint(monkeypatch):
    log, _ = cyclic_log()
    # None in sys.modules makes `import torch` raise ImportError, as if it were not installed.
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'tailor\[deep\]'") as error:
        SASRec().fit(log.matrix(), log=log)
    assert isinstance(error.value, ImportError)


def test_the_module_imports_without_torch():
    # A finder that refuses torch, as an environment without it would (a None in sys.modules
    # would trip SciPy's array-API checks, which look torch up there).
    code = (
        "import importlib.abc, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('no torch here')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from tailor.recommend.models.sasrec import SASRec\n"
        "from tailor.recommend.interactions import InteractionLog\n"
        "log = InteractionLog.from_arrays([0, 0], [0, 1], times=[0, 1])\n"
        "try:\n"
        "    SASRec().fit(log.matrix(), log=log)\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SASRec needs PyTorch: pip install 'tailor[deep]'"
