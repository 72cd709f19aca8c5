"""The candidate models, by name."""

from tailor.recommend.base import Recommender
from tailor.recommend.models.ease import EASE
from tailor.recommend.models.itemknn import ItemKNN
from tailor.recommend.models.matrix_factorization import ALS, BPR
from tailor.recommend.models.popularity import Popularity

MODELS: dict[str, type[Recommender]] = {m.name: m for m in (Popularity, ItemKNN, EASE, ALS, BPR)}

__all__ = ["ALS", "BPR", "EASE", "MODELS", "ItemKNN", "Popularity"]
