"""Recommendation engine: candidate models over the event log, tuned on validation data.

The shape every model shares (:class:`~tailor.recommend.base.Recommender`): keyword-only
hyperparameters, ``fit(interactions)`` on a users × items confidence matrix, ``score`` and
``recommend`` over users' histories (so a user the model never saw is scored from their
events, without retraining), and ``save``/``load`` as a JSON header plus ``.npz``.
"""

from tailor.recommend.base import Recommender, load_model
from tailor.recommend.blend import Blend
from tailor.recommend.hybrid import Hybrid
from tailor.recommend.interactions import EventWeights, InteractionLog
from tailor.recommend.models import MODELS

__all__ = [
    "MODELS",
    "Blend",
    "EventWeights",
    "Hybrid",
    "InteractionLog",
    "Recommender",
    "load_model",
]
