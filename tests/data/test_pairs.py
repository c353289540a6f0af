"""Pair planning, negatives, filters and the whole pair-making step on real seed and C50 data."""

from __future__ import annotations

import difflib
from collections import Counter

import pytest

from persrm_utils.data.corpus import exemplars_from_texts
from persrm_utils.data.exemplars import collect, select, split_counts, trim_output
from persrm_utils.data.offline_writers import (
    SYNONYMS,
    markov_mimic,
    restyle,
    synonym_swap,
    synonym_tells,
)
from persrm_utils.data.pairs import (
    changed_words,
    check_negative,
    cross_author_negative,
    diff_html,
    generation_requests,
    make_pairs,
    offline_backend,
    plan_pairs,
)
from persrm_utils.data.textsplit import sentences
from persrm_utils.errors import DataError
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.profiles import get_profile
from persrm_utils.records import Exemplar


@pytest.fixture(scope="module")
def smoke_exemplars():
    return collect(get_profile("smoke"))


def _ex(author: str, tid: str, prompt: str, output: str, split: str = "train") -> Exemplar:
    return Exemplar(author_id=author, text_id=tid, prompt=prompt, output=output, source="own",
                    meta={"split": split})  # fmt: skip


# --- exemplar selection and splits ------------------------------------------------------------


def test_smoke_collect_splits_by_author(smoke_exemplars):
    counts = split_counts(smoke_exemplars)
    assert set(counts) == {"train", "val", "test", "seen_test"}
    by_split = {s: {e.author_id for e in smoke_exemplars if e.meta["split"] == s} for s in counts}
    assert not by_split["test"] & (by_split["train"] | by_split["val"]), "test authors are unseen"
    assert by_split["seen_test"] <= by_split["train"], "seen_test holds out training authors"
    assert sum(c["texts"] for c in counts.values()) == 6 * 8


def test_own_texts_join_the_unseen_test_authors():
    own = exemplars_from_texts(
        "me", ["First one here. And more text.", "Second text now. It has two sentences."]
    )
    out = collect(get_profile("smoke"), own=own)
    mine = [e for e in out if e.author_id == "me"]
    assert len(mine) == 2 and all(e.meta["split"] == "test" for e in mine)


def test_trim_output_keeps_whole_sentences_within_the_budget():
    text = "One two three four. Five six seven. Eight nine ten eleven twelve."
    assert trim_output(text, 7) == "One two three four. Five six seven."
    assert trim_output(text, 2) == "One two three four."  # never empty: at least one sentence
    assert trim_output(text, 100) == text


def test_too_few_authors_for_the_profile_is_a_clear_error():
    with pytest.raises(DataError) as err:
        select(collect(get_profile("smoke")), get_profile("smoke", n_train_authors=40))
    assert "needs 42 authors" in str(err.value) and "n_train_authors" in str(err.value)


def test_cpu_profile_reads_real_c50():
    profile = get_profile("cpu")
    out = collect(profile)
    wanted = profile.n_train_authors + profile.n_val_authors + profile.n_test_authors
    assert len({e.author_id for e in out}) == wanted == 50  # every C50 author: 36 + 2 + 12
    # whole sentences up to the word cap; a single longer first sentence is kept whole
    assert all(len(e.output.split()) <= profile.max_output_words or len(sentences(e.output)) == 1
               for e in out)  # fmt: skip
    counts = split_counts(out)
    assert counts["test"]["authors"] == 12 and counts["val"]["authors"] == 2
    # at least 100 unseen-author test pairs, judged in both orders, for an honest interval
    assert counts["test"]["texts"] >= 100


# --- planning ---------------------------------------------------------------------------------


def test_plan_is_balanced_and_never_shows_the_pairs_own_text(smoke_exemplars):
    planned = plan_pairs(smoke_exemplars, max_exemplars=3, seed=0)
    assert len(planned) == len(smoke_exemplars)
    by_id = {e.text_id: e for e in smoke_exemplars}
    for p in planned:
        assert p.anchor.text_id not in p.exemplar_ids
        assert 1 <= len(p.exemplar_ids) <= 3
        assert {by_id[i].author_id for i in p.exemplar_ids} == {p.anchor.author_id}
        pool = "train" if p.split == "seen_test" else p.split
        assert {by_id[i].meta["split"] for i in p.exemplar_ids} == {pool}
    for split in ("train", "val", "test", "seen_test"):
        mine = [p for p in planned if p.split == split]
        types = Counter(p.negative_type for p in mine)
        assert max(types.values()) - min(types.values()) <= 1, (split, types)
        pos = Counter(p.chosen_position for p in mine)
        assert abs(pos["A"] - pos["B"]) <= 1, (split, pos)


def test_plan_is_deterministic_by_seed(smoke_exemplars):
    a = plan_pairs(smoke_exemplars, 2, seed=0)
    b = plan_pairs(smoke_exemplars, 2, seed=0)
    c = plan_pairs(smoke_exemplars, 2, seed=1)
    key = lambda ps: [(p.pair_id, p.exemplar_ids, p.chosen_position) for p in ps]  # noqa: E731
    assert key(a) == key(b) and key(a) != key(c)


def test_plan_requires_split_labels():
    with pytest.raises(DataError, match=r"meta\.split"):
        plan_pairs([_ex("a", "a1", "P.", "O.", split="")], 1, 0)


# --- negatives and filters --------------------------------------------------------------------


def test_cross_author_picks_the_most_similar_opening_by_someone_else():
    anchor = _ex("a", "a1", "The central bank raised interest rates on Tuesday.", "x y z.")
    cands = [
        _ex("a", "a2", "The central bank raised interest rates again.", "same author."),
        _ex("b", "b1", "Football season opened with a surprise win.", "sport."),
        _ex("c", "c1", "Interest rates were raised by the central bank.", "banking."),
    ]
    assert cross_author_negative(anchor, cands).text_id == "c1"
    with pytest.raises(DataError, match="another author"):
        cross_author_negative(anchor, cands[:1])


REAL = "Shares of Acme rose 3.5 percent on Monday after the company said profit would rise sharply."


@pytest.mark.parametrize(
    ("neg", "rejected", "finish", "reason"),
    [
        ("style_mimic", "   ", "stop", "empty"),
        ("style_mimic", "The market was calm and traders said little about", "length", "truncated"),
        ("style_random", REAL.replace("sharply", "sharply!"), "stop", "near_identical"),
        ("style_random", "Wow.", "stop", "length_outlier"),
        ("style_random", " ".join(["Words and more words."] * 20), "stop", "length_outlier"),
        ("minor_replace", REAL, "stop", "minor_replace_count"),
        ("minor_replace", REAL.replace("3.5", "4.5").replace("rose", "climbed"), "stop",
         "minor_replace_facts"),
        ("minor_replace", REAL.replace("Acme", "Apex").replace("rose", "climbed"), "stop",
         "minor_replace_facts"),
        ("minor_replace", REAL.replace("rose", "climbed").replace("said", "stated")
         .replace("sharply", "steeply"), "stop", None),
        ("style_random", "OMG this is the best day ever, honestly the company is SO wild!!",
         "stop", None),
    ],
)  # fmt: skip
def test_check_negative_reasons(neg, rejected, finish, reason):
    assert check_negative(neg, REAL, rejected, finish) == reason


def test_changed_words_counts_replacements_insertions_and_deletions():
    assert changed_words("a b c d", "a b c d") == 0
    assert changed_words("a b c d", "a x c d") == 1
    assert changed_words("a b c d", "a b c d e f") == 2
    assert changed_words("a b c d", "a d") == 2


def test_synonym_tells_flags_a_replacement_the_authors_never_write():
    """The first table swapped "said" for "stated", which Reuters authors almost never write: an
    n-gram model then spots minor_replace negatives by that one word instead of by style."""
    texts = ["He said the deal was big. She said it was about done."] * 20 + ["It stated a fact."]
    tells = synonym_tells(texts, {"said": "stated", "big": "large", "deal": "agreement"})
    assert tells == {"said": (40, 1), "big": (20, 0), "deal": (20, 0)}
    assert synonym_tells(texts, {"said": "stated"}, min_ratio=0.01) == {}


def test_synonym_table_has_no_tell_on_reuters_c50():
    """Every replacement of the built-in table is a word C50's authors write themselves."""
    from persrm_utils import paths
    from persrm_utils.data.corpus import load_c50

    root = paths.find_c50()
    if root is None:
        pytest.fail("Reuters C50 not found: set PERSRM_C50_DIR (see data/README.md).")
    texts = [f"{e.prompt} {e.output}" for e in load_c50(root, split="all")]
    assert synonym_tells(texts, SYNONYMS) == {}
    assert "said" not in SYNONYMS


def test_synonym_swap_changes_exactly_n_words_and_no_facts():
    text = "The company said on Monday that growth was about 4 percent, because demand fell."
    out = synonym_swap(text, 3, seed=7)
    assert changed_words(text, out) == 3
    assert check_negative("minor_replace", text, out) is None
    assert synonym_swap(text, 3, seed=7) == out
    assert "Monday" in out and "4" in out


def test_markov_mimic_uses_the_authors_words():
    texts = ["The cat sat on the mat. The dog sat on the rug.", "A cat ran. The dog ran far."]
    out = markov_mimic(texts, "Once upon a time the cat", 8, seed=1)
    vocab = {w for t in texts for w in t.split()}
    assert out.endswith(".") and set(out.split()) <= vocab | {w + "." for w in vocab}
    assert markov_mimic(texts, "x", 8, seed=1) == markov_mimic(texts, "x", 8, seed=1)


def test_restyle_shares_little_wording_with_the_original():
    out = restyle(REAL, voice=0, n_words=20)
    assert difflib.SequenceMatcher(a=REAL, b=out).ratio() < 0.5
    assert out != restyle(REAL, voice=1, n_words=20)


def test_diff_html_marks_changes():
    html = diff_html("a quick brown fox", "a fast brown fox")
    assert "<del style='color:#b00'>quick</del>" in html
    assert "<ins style='color:#070'>fast</ins>" in html


# --- the whole step ---------------------------------------------------------------------------


def test_make_pairs_offline_then_resume_from_the_cache(smoke_exemplars, tmp_path):
    planned = plan_pairs(smoke_exemplars, 2, seed=0)
    by_id = {e.text_id: e for e in smoke_exemplars}
    cache = tmp_path / "negatives.jsonl"
    gen0 = CachedGenerator(offline_backend(planned, by_id), cache)
    first = make_pairs(planned, smoke_exemplars, gen0, 60, "rules", progress=False)
    pairs = [p for ps in first.pairs.values() for p in ps]
    assert all(first.pairs[s] for s in ("train", "val", "test", "seen_test"))
    assert {p.negative_type for p in pairs} == {
        "style_mimic", "style_random", "minor_replace", "cross_author"}  # fmt: skip
    for p in pairs:
        assert p.text_id not in p.exemplar_ids
        assert p.chosen == by_id[p.text_id].output and p.chosen != p.rejected
        assert (p.response_a == p.chosen) == (p.chosen_position == "A")
        if p.negative_type == "cross_author":
            assert by_id[p.negative_source.split(":", 1)[1]].author_id != p.author_id
    kept = sum(first.report.kept.values())
    assert kept == len(pairs) and kept + sum(first.report.dropped.values()) == len(planned)

    gen = CachedGenerator(offline_backend(planned, by_id), cache)
    again = make_pairs(planned, smoke_exemplars, gen, 60, "rules", progress=False)
    assert gen.cache_stats.generated == 0 and gen.cache_stats.hits == first.generated
    assert again.pairs == first.pairs


def test_llm_requests_cover_exactly_the_llm_types(smoke_exemplars):
    planned = plan_pairs(smoke_exemplars, 2, seed=0)
    by_id = {e.text_id: e for e in smoke_exemplars}
    llm = generation_requests(planned, by_id, 60, "llm")
    rules = generation_requests(planned, by_id, 60, "rules")
    types = Counter(r.meta["negative_type"] for r in llm)
    assert set(types) == {"style_mimic", "style_random", "minor_replace"}
    assert "minor_replace" not in {r.meta["negative_type"] for r in rules}
    mimic = next(r for r in llm if r.meta["negative_type"] == "style_mimic")
    p = next(p for p in planned if p.pair_id == mimic.meta["pair_id"])
    for tid in p.exemplar_ids:
        assert by_id[tid].output in mimic.messages[-1]["content"]
    assert p.anchor.output not in mimic.messages[-1]["content"], "never show the answer"
