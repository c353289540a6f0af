"""Notebooks 01 and 02: corpora, your own texts, splits by author, measured style, exemplars and
preference pairs.

The names below are what the notebooks use; everything else is in the modules of this package.
"""

from persrm_utils.data.corpus import exemplars_from_texts, load_own_texts, save_own_texts
from persrm_utils.data.exemplars import (
    assign_splits,
    corpus_record,
    load_corpus_report,
    read_exemplars,
    select,
    split_counts,
)
from persrm_utils.data.own_corpus import load_corpus_file
from persrm_utils.data.pairs import (
    changed_words,
    generation_requests,
    make_backend,
    make_pairs,
    plan_pairs,
    side_by_side_html,
)
from persrm_utils.data.stylometry import (
    author_profiles,
    feature_names,
    feature_scale,
    feature_table,
    style_distance,
    text_features,
)
from persrm_utils.data.textsplit import split_opening

__all__ = [
    "assign_splits",
    "author_profiles",
    "changed_words",
    "corpus_record",
    "exemplars_from_texts",
    "feature_names",
    "feature_scale",
    "feature_table",
    "generation_requests",
    "load_corpus_file",
    "load_corpus_report",
    "load_own_texts",
    "make_backend",
    "make_pairs",
    "plan_pairs",
    "read_exemplars",
    "save_own_texts",
    "select",
    "side_by_side_html",
    "split_counts",
    "split_opening",
    "style_distance",
    "text_features",
]
