"""Semantic-distance providers: ``provider(ids_a, ids_b) -> (A, B)`` distances in [0, 1]."""

from .base import SemanticDistance
from .caption_sets import (
    CAPTION_TARGETS,
    CaptionSetDistance,
    CaptionWordDistance,
    content_lemmas,
    draw_captions,
)
from .factory import SEMANTIC_KINDS, build_semantic_distance, hierarchy_for_classes
from .hierarchy import HierarchyDistance
from .label import LabelDistance
from .matrix import MatrixDistance
from .power import PowerDistance
from .sentence import (
    DEFAULT_SENTENCE_MODEL,
    SentenceEmbeddingDistance,
    default_sentence_model,
    encode_sentences,
)
from .wordnet import (
    WordNetNotFoundError,
    is_wnid,
    load_wordnet,
    readable_names,
    synset_to_wnid,
    wordnet_synset,
)

__all__ = [
    "SemanticDistance",
    "HierarchyDistance",
    "LabelDistance",
    "MatrixDistance",
    "PowerDistance",
    "SentenceEmbeddingDistance",
    "CaptionSetDistance",
    "CaptionWordDistance",
    "CAPTION_TARGETS",
    "content_lemmas",
    "draw_captions",
    "SEMANTIC_KINDS",
    "build_semantic_distance",
    "hierarchy_for_classes",
    "DEFAULT_SENTENCE_MODEL",
    "default_sentence_model",
    "encode_sentences",
    "WordNetNotFoundError",
    "is_wnid",
    "load_wordnet",
    "readable_names",
    "synset_to_wnid",
    "wordnet_synset",
]
