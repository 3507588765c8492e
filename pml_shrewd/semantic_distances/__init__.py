"""Semantic-distance providers: ``provider(ids_a, ids_b) -> (A, B)`` distances in [0, 1]."""

from .base import SemanticDistance
from .hierarchy import HierarchyDistance
from .label import LabelDistance
from .matrix import MatrixDistance
from .power import PowerDistance
from .sentence import SentenceEmbeddingDistance
from .wordnet import WordNetNotFoundError, load_wordnet, synset_to_wnid, wordnet_synset

__all__ = [
    "SemanticDistance",
    "HierarchyDistance",
    "LabelDistance",
    "MatrixDistance",
    "PowerDistance",
    "SentenceEmbeddingDistance",
    "WordNetNotFoundError",
    "load_wordnet",
    "synset_to_wnid",
    "wordnet_synset",
]
