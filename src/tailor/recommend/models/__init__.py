"""The candidate models, by name."""

from tailor.recommend.base import Recommender
from tailor.recommend.models.content import ContentSimilarity
from tailor.recommend.models.ease import EASE
from tailor.recommend.models.itemknn import ItemKNN
from tailor.recommend.models.matrix_factorization import ALS, BPR
from tailor.recommend.models.popularity import Popularity
from tailor.recommend.models.sasrec import SASRec
from tailor.recommend.models.trending import Trending

MODELS: dict[str, type[Recommender]] = {
    m.name: m for m in (Popularity, Trending, ItemKNN, EASE, ALS, BPR, ContentSimilarity, SASRec)
}

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "MODELS",
    "ContentSimilarity",
    "ItemKNN",
    "Popularity",
    "SASRec",
    "Trending",
]
