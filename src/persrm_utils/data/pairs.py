"""Synthetic preference pairs: the author's real continuation against a negative.

A pair is (exemplars of one author, an opening ``prompt``, the author's real ``chosen``
continuation, a ``rejected`` one). The reward model must say which of the two the author wrote.
How the negative is made decides how hard the pair is (docs/design.md §5):

============== ========================================================== =============
type           how                                                        difficulty
============== ========================================================== =============
style_mimic    an LLM imitates the author's exemplars for the same opening hard
style_random   an LLM continues the opening in a random, off-style voice   easy
minor_replace  3-4 words of the real text swapped for close synonyms       very hard
cross_author   another author's real continuation of a similar opening     medium, real
============== ========================================================== =============

Everything here is deterministic given the seed: which negative type each text gets, which
exemplars the judge sees (k = 1..max, never the pair's own text), and whether the real text is
shown as Response A or B (balanced within each split).
"""

from __future__ import annotations

import difflib
import html
import os
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from persrm_utils.data.offline_writers import markov_mimic, restyle, synonym_swap
from persrm_utils.errors import ConfigError, DataError
from persrm_utils.generation.local import TransformersBackend
from persrm_utils.generation.openai_compat import OpenAIBackend
from persrm_utils.generation.requests import GenRequest, OfflineBackend
from persrm_utils.models.loader import load_model
from persrm_utils.records import (
    NEGATIVE_TYPES,
    Exemplar,
    NegativeType,
    Pair,
    SplitName,
    stable_id,
)

# --------------------------------------------------------------------------------------------
# The instructions given to the generator, one per LLM negative type (our wording of the paper's).
# --------------------------------------------------------------------------------------------

SYSTEM_WRITER = (
    "You are a careful writer. Follow the instructions exactly and output only the text asked for."
)

#: Voices for style_random: far from news prose and from each other, so the negative is easy.
RANDOM_STYLES: tuple[str, ...] = (
    "an excited teenager posting on social media, with slang and exclamation marks",
    "a Victorian novelist, with long ornate sentences",
    "a children's picture-book narrator, with very short simple sentences",
    "a sarcastic stand-up comedian",
    "a legal contract, with formal clauses and defined terms",
    "a sports commentator calling a live match",
    "a poet writing free verse, with line-like fragments",
    "a tired customer-support agent writing a chat reply",
    "a medieval chronicler",
    "a motivational coach, addressing the reader as 'you'",
)


def _exemplar_block(exemplars: Sequence[Exemplar]) -> str:
    return "\n\n".join(f"[Text {i}]\n{ex.prompt} {ex.output}" for i, ex in enumerate(exemplars, 1))


def _n_words(text: str) -> int:
    return len(text.split())


def mimic_messages(prompt: str, target_words: int, exemplars: Sequence[Exemplar]) -> list[dict]:
    """style_mimic: continue the opening *as this author would*, from their exemplars."""
    user = (
        "Here are texts written by one author:\n\n"
        f"{_exemplar_block(exemplars)}\n\n"
        "Study how this author writes: tone, word choice, sentence length, punctuation and how "
        "they structure a piece. Then continue the opening below exactly as this author would. "
        f"Write about {target_words} words. Output only the continuation, without the opening.\n\n"
        f"Opening: {prompt}"
    )
    return [{"role": "system", "content": SYSTEM_WRITER}, {"role": "user", "content": user}]


def random_style_messages(prompt: str, target_words: int, style: str) -> list[dict]:
    """style_random: continue the opening in a voice unrelated to the author's."""
    user = (
        f"Continue the opening below in the voice of {style}. Write about {target_words} words. "
        f"Output only the continuation, without the opening.\n\nOpening: {prompt}"
    )
    return [{"role": "system", "content": SYSTEM_WRITER}, {"role": "user", "content": user}]


def minor_replace_messages(text: str, n_words: int) -> list[dict]:
    """minor_replace: swap a few words for close synonyms and change nothing else."""
    user = (
        f"Rewrite the text below, replacing exactly {n_words} words with close synonyms. Keep "
        "every other word, every name, every number and all punctuation exactly as they are. "
        f"Output only the rewritten text.\n\nText: {text}"
    )
    return [{"role": "system", "content": SYSTEM_WRITER}, {"role": "user", "content": user}]


# --------------------------------------------------------------------------------------------
# Planning: which text gets which negative, which exemplars, which position.
# --------------------------------------------------------------------------------------------


@dataclass
class PlannedPair:
    """A pair before its negative exists."""

    pair_id: str
    split: SplitName
    anchor: Exemplar
    negative_type: NegativeType
    exemplar_ids: list[str]
    chosen_position: Literal["A", "B"]
    seen_author: bool
    style: str | None = None  # for style_random
    n_replace: int | None = None  # for minor_replace
    meta: dict[str, Any] = field(default_factory=dict)


def plan_pairs(
    exemplars: Sequence[Exemplar],
    max_exemplars: int,
    seed: int,
    types: Sequence[NegativeType] = NEGATIVE_TYPES,
    train_types: Sequence[NegativeType] | None = None,
) -> list[PlannedPair]:
    """One planned pair per text that has at least one other text by the same author in its pool.

    ``exemplars`` carry their split in ``meta["split"]`` (written by notebook 01). The judge's
    exemplars for a pair come from the *same author's other texts*: for training and validation
    authors from their own split, for unseen test authors from their own (test) texts, and for
    seen-author test texts from the author's training texts. Negative types are dealt round-robin
    over a seeded shuffle, so every split gets a balanced mix; positions A/B likewise.

    ``train_types`` restricts the *training* split to some types (a curriculum: the blatant types
    first, when the budget cannot teach the hard ones); the held-out splits keep ``types``, so
    the evaluation still measures every type.
    """
    if not 1 <= max_exemplars <= 3:
        raise DataError(f"max_exemplars={max_exemplars}", "use 1, 2 or 3.")
    by_split_author: dict[tuple[str, str], list[Exemplar]] = defaultdict(list)
    for ex in exemplars:
        split = str(ex.meta.get("split", ""))
        if split not in ("train", "val", "test", "seen_test"):
            raise DataError(
                f"exemplar '{ex.text_id}' has meta.split={split!r}",
                "every exemplar needs meta.split in train/val/test/seen_test: run 01_exemplars.",
                field="meta.split",
            )
        by_split_author[(split, ex.author_id)].append(ex)
    rng = random.Random(seed)
    planned: list[PlannedPair] = []
    for split in ("train", "val", "test", "seen_test"):
        anchors = [
            ex for (s, _), exs in sorted(by_split_author.items()) if s == split for ex in exs
        ]
        order = list(range(len(anchors)))
        rng.shuffle(order)
        positions = (["A", "B"] * (len(anchors) // 2 + 1))[: len(anchors)]
        rng.shuffle(positions)  # exactly half A (one more when odd), in a seeded order
        for slot, idx in enumerate(order):
            anchor = anchors[idx]
            pool_split = "train" if split == "seen_test" else split
            pool = [
                ex
                for ex in by_split_author.get((pool_split, anchor.author_id), [])
                if ex.text_id != anchor.text_id
            ]
            if not pool:
                continue
            k = rng.randint(1, min(max_exemplars, len(pool)))
            chosen_ex = rng.sample(pool, k)
            dealt = train_types if (split == "train" and train_types) else types
            neg = dealt[slot % len(dealt)]
            planned.append(
                PlannedPair(
                    pair_id=stable_id(split, anchor.text_id, neg),
                    split=split,  # type: ignore[arg-type]
                    anchor=anchor,
                    negative_type=neg,
                    exemplar_ids=[e.text_id for e in chosen_ex],
                    chosen_position=positions[slot],  # type: ignore[arg-type]
                    seen_author=split != "test",
                    style=rng.choice(RANDOM_STYLES) if neg == "style_random" else None,
                    n_replace=rng.choice((3, 4)) if neg == "minor_replace" else None,
                )
            )
    return planned


# --------------------------------------------------------------------------------------------
# cross_author: a real continuation by someone else.
# --------------------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z']+|\d+")


def _bag(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if len(w) > 3}


def cross_author_negative(anchor: Exemplar, candidates: Sequence[Exemplar]) -> Exemplar:
    """The other author's text whose opening shares most content words with this opening.

    Word-overlap (Jaccard) of the openings is crude but transparent, and it is enough to make the
    negative topical: a news piece about a merger gets another merger story, not a football one.
    Ties break on text_id, so the choice is deterministic.
    """
    others = [c for c in candidates if c.author_id != anchor.author_id]
    if not others:
        raise DataError(
            f"no text by another author to pair with '{anchor.text_id}'",
            "cross_author negatives need at least two authors in the same split.",
        )
    mine = _bag(anchor.prompt)

    def score(c: Exemplar) -> tuple[float, str]:
        theirs = _bag(c.prompt)
        union = mine | theirs
        return (len(mine & theirs) / len(union) if union else 0.0, c.text_id)

    return max(others, key=score)


# --------------------------------------------------------------------------------------------
# Filters, with counts a learner can read.
# --------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"\d[\d,.]*")


def changed_words(original: str, rewritten: str) -> int:
    """How many words of ``original`` were replaced, inserted or deleted in ``rewritten``."""
    a, b = original.split(), rewritten.split()
    changed = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag != "equal":
            changed += max(i2 - i1, j2 - j1)
    return changed


def _names(text: str) -> Counter:
    """Capitalised words not at a sentence start: a cheap stand-in for named entities."""
    words = text.split()
    out: Counter = Counter()
    for prev, word in zip([".", *words[:-1]], words, strict=True):
        core = word.strip("\"'()[],;:.!?")
        if core[:1].isupper() and not prev.endswith((".", "!", "?", '"')):
            out[core] += 1
    return out


@dataclass
class FilterReport:
    """Counts per (negative type, reason): shown as a table in notebook 02."""

    kept: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)  # key: (type, reason)

    def rows(self) -> list[dict[str, Any]]:
        reasons = sorted({r for _, r in self.dropped})
        out = []
        for neg in NEGATIVE_TYPES:
            row = {"negative_type": neg, "kept": self.kept[neg]}
            row.update({r: self.dropped[(neg, r)] for r in reasons})
            out.append(row)
        return out


MIN_LENGTH_RATIO = 0.33
MAX_LENGTH_RATIO = 3.0
NEAR_IDENTICAL = 0.9


def check_negative(
    negative_type: NegativeType,
    chosen: str,
    rejected: str,
    finish_reason: str = "stop",
    n_replace: int | None = None,
) -> str | None:
    """The reason a negative is unusable, or None when it is kept.

    * ``empty``: nothing was generated;
    * ``truncated``: the generator hit its token limit mid-sentence;
    * ``near_identical``: the negative is (almost) the real text, so the label would be noise;
    * ``minor_replace_count``: a minor_replace that changed fewer than 2 or more than 6 words;
    * ``minor_replace_facts``: a minor_replace that changed a name or a number (then it is a
      factual edit, not a style edit);
    * ``length_outlier``: a third of the real text's length or less, or three times or more:
      length alone would give the answer away.
    """
    text = rejected.strip()
    if not text:
        return "empty"
    if finish_reason == "length" and not text.endswith((".", "!", "?", '"', "'")):
        return "truncated"
    if negative_type == "minor_replace":
        n = changed_words(chosen, text)
        if not 2 <= n <= 6:
            return "minor_replace_count"
        if _NUMBER.findall(chosen) != _NUMBER.findall(text) or _names(chosen) != _names(text):
            return "minor_replace_facts"
        return None
    if difflib.SequenceMatcher(a=chosen, b=text, autojunk=False).ratio() >= NEAR_IDENTICAL:
        return "near_identical"
    ratio = _n_words(text) / max(1, _n_words(chosen))
    if not MIN_LENGTH_RATIO < ratio < MAX_LENGTH_RATIO:
        return "length_outlier"
    return None


def clean_generation(text: str, prompt: str) -> str:
    """Undo the commonest generator habits: echoing the opening, labels, wrapping quotes."""
    out = text.strip()
    for label in ("Continuation:", "Rewritten text:", "Text:", "Output:"):
        if out.lower().startswith(label.lower()):
            out = out[len(label) :].strip()
    if prompt and out.startswith(prompt):
        out = out[len(prompt) :].strip()
    if len(out) > 1 and out[0] == out[-1] == '"' and out.count('"') == 2:
        out = out[1:-1].strip()
    return out


def dedupe(pairs: Iterable[Pair], report: FilterReport) -> list[Pair]:
    """Drop a pair whose (prompt, rejected) was already used: two identical items teach twice."""
    seen: set[tuple[str, str]] = set()
    out = []
    for pair in pairs:
        key = (pair.prompt.strip(), pair.rejected.strip())
        if key in seen:
            report.dropped[(pair.negative_type, "duplicate")] += 1
            report.kept[pair.negative_type] -= 1
            continue
        seen.add(key)
        out.append(pair)
    return out


# --------------------------------------------------------------------------------------------
# Making the pairs.
# --------------------------------------------------------------------------------------------

MinorReplaceWriter = Literal["llm", "rules"]


def _seed_of(pair_id: str) -> int:
    return int(pair_id[:8], 16)


def _target_words(anchor: Exemplar, cap: int) -> int:
    return max(10, min(cap, _n_words(anchor.output)))


def generation_requests(
    planned: Sequence[PlannedPair],
    by_id: dict[str, Exemplar],
    max_words: int = 120,
    minor_replace_writer: MinorReplaceWriter = "llm",
) -> list[Any]:
    """The generator requests for every LLM-made negative (one per planned pair that needs one).

    All requests are greedy: the outputs are deterministic, a local model can batch them, and
    the variety comes from the prompts (every pair has its own opening, exemplars or voice).
    """

    requests = []
    for p in planned:
        if p.negative_type == "cross_author":
            continue
        if p.negative_type == "minor_replace" and minor_replace_writer == "rules":
            continue
        words = _target_words(p.anchor, max_words)
        if p.negative_type == "style_mimic":
            shown = [by_id[i] for i in p.exemplar_ids]
            messages = mimic_messages(p.anchor.prompt, words, shown)
        elif p.negative_type == "style_random":
            messages = random_style_messages(p.anchor.prompt, words, p.style or RANDOM_STYLES[0])
        else:
            messages = minor_replace_messages(p.anchor.output, p.n_replace or 3)
        requests.append(
            GenRequest(
                messages=messages,
                max_new_tokens=int(words * 2) + 16,
                temperature=0.0,
                seed=_seed_of(p.pair_id),
                meta={"pair_id": p.pair_id, "negative_type": p.negative_type},
            )
        )
    return requests


def offline_backend(planned: Sequence[PlannedPair], by_id: dict[str, Exemplar]):
    """An :class:`~persrm_utils.generation.requests.OfflineBackend` that writes each negative
    without a
    model (see :mod:`persrm_utils.data.offline_writers`): for the smoke profile and for tests."""

    index = {p.pair_id: p for p in planned}

    def write(request) -> str:
        p = index[request.meta["pair_id"]]
        seed = _seed_of(p.pair_id)
        if p.negative_type == "style_mimic":
            texts = [f"{by_id[i].prompt} {by_id[i].output}" for i in p.exemplar_ids]
            return markov_mimic(texts, p.anchor.prompt, _n_words(p.anchor.output), seed)
        if p.negative_type == "style_random":
            return restyle(p.anchor.prompt + " " + p.anchor.output, seed, _n_words(p.anchor.output))
        return synonym_swap(p.anchor.output, p.n_replace or 3, seed)

    write.__name__ = "offline_writers"
    return OfflineBackend(fn=write, name="offline-writers-v1")


@dataclass
class PairsResult:
    pairs: dict[str, list[Pair]]
    report: FilterReport
    generated: int
    seconds: float


def make_pairs(
    planned: Sequence[PlannedPair],
    exemplars: Sequence[Exemplar],
    generator: Any,
    max_words: int = 120,
    minor_replace_writer: MinorReplaceWriter = "llm",
    progress: bool = True,
    budget_s: float | None = None,
) -> PairsResult:
    """Generate every negative through ``generator`` (a ``CachedGenerator``), filter, and group.

    Generation goes through the resumable cache, so calling this again after an interruption
    sends only the requests that are not cached yet, and the result is the same pairs. With
    ``budget_s``, the generator stops asking for new negatives once that many seconds have
    passed, and the offline writers write the rest; every pair records its writer in
    ``negative_source``.
    """

    start = time.perf_counter()
    by_id = {ex.text_id: ex for ex in exemplars}
    requests = generation_requests(planned, by_id, max_words, minor_replace_writer)
    made = _generate(generator, requests, progress, budget_s, planned, by_id)

    # cross_author candidates: other authors of the same split, plus the training authors for
    # the held-out splits (a training text as a *negative* leaks nothing about a test author;
    # the reverse would put unseen authors' texts into training).
    pools: dict[str, list[Exemplar]] = defaultdict(list)
    for ex in exemplars:
        pools[str(ex.meta.get("split"))].append(ex)
    for split in ("val", "test", "seen_test"):
        pools[split] = pools[split] + pools["train"]

    report = FilterReport()
    kept: list[Pair] = []
    for p in planned:
        finish = "stop"
        if p.negative_type == "cross_author":
            other = cross_author_negative(p.anchor, pools[p.split])
            rejected, neg_source = other.output, f"real:{other.text_id}"
        elif p.pair_id in made:
            res = made[p.pair_id]
            rejected = clean_generation(res.text, p.anchor.prompt)
            finish, neg_source = res.finish_reason, f"{res.backend}:{res.model}"
        else:  # minor_replace by rules
            rejected = synonym_swap(p.anchor.output, p.n_replace or 3, _seed_of(p.pair_id))
            neg_source = "rules:synonym_swap"
        reason = check_negative(p.negative_type, p.anchor.output, rejected, finish, p.n_replace)
        if reason:
            report.dropped[(p.negative_type, reason)] += 1
            continue
        report.kept[p.negative_type] += 1
        kept.append(
            Pair(
                pair_id=p.pair_id,
                split=p.split,
                author_id=p.anchor.author_id,
                text_id=p.anchor.text_id,
                prompt=p.anchor.prompt,
                chosen=p.anchor.output,
                rejected=rejected,
                negative_type=p.negative_type,
                exemplar_ids=p.exemplar_ids,
                chosen_position=p.chosen_position,
                negative_source=neg_source,
                seen_author=p.seen_author,
                meta={"k": len(p.exemplar_ids), **({"style": p.style} if p.style else {})},
            )
        )
    kept = dedupe(kept, report)
    grouped: dict[str, list[Pair]] = {s: [] for s in ("train", "val", "test", "seen_test")}
    for pair in kept:
        grouped[pair.split].append(pair)
    return PairsResult(grouped, report, len(requests), time.perf_counter() - start)


def _generate(
    generator: Any,
    requests: list,
    progress: bool,
    budget_s: float | None,
    planned: Sequence[PlannedPair],
    by_id: dict[str, Exemplar],
) -> dict[str, Any]:
    """{pair_id: GenResult} for every request: from ``generator`` within ``budget_s``, then
    from the offline writers (the same request, so a rerun with a bigger budget resumes)."""

    if not requests:
        return {}
    if budget_s is None:
        results = generator.generate(requests, progress=progress, desc="negatives")
        return {r.meta["pair_id"]: res for r, res in zip(requests, results, strict=True)}
    made: dict[str, Any] = {}
    start = time.perf_counter()
    step = max(1, int(getattr(getattr(generator, "backend", generator), "batch_size", 8)))
    i = 0
    while i < len(requests) and time.perf_counter() - start < budget_s:
        chunk = requests[i : i + step]
        for req, res in zip(chunk, generator.generate(chunk, progress=False), strict=True):
            made[req.meta["pair_id"]] = res
        i += step
    rest = requests[i:]
    if rest:
        print(
            f"negatives budget of {budget_s:.0f} s spent after {i} of {len(requests)} "
            f"requests: the offline writers write the other {len(rest)}"
        )
        fallback = offline_backend(planned, by_id).generate(rest)
        made |= {r.meta["pair_id"]: res for r, res in zip(rest, fallback, strict=True)}
    return made


GeneratorKind = Literal["auto", "offline", "local", "openai"]


def make_backend(
    kind: GeneratorKind,
    profile: Any,
    planned: Sequence[PlannedPair],
    by_id: dict[str, Exemplar],
    base_url: str | None = None,
    model: str | None = None,
) -> Any:
    """The generation backend for negatives, chosen by name.

    * ``auto``: the profile's ``negatives_generator`` (always ``offline`` for the tiny model);
    * ``offline``: no model (the smoke and cpu profiles): see :func:`offline_backend`;
    * ``local``: the profile's own model in this process, batched;
    * ``openai``: any OpenAI-compatible server (vLLM, llama.cpp, Ollama, a hosted API):
      ``base_url`` / ``model`` or the ``OPENAI_BASE_URL`` / ``OPENAI_MODEL`` environment
      variables; the key is read from ``OPENAI_API_KEY`` at call time and never stored.
    """

    if kind == "auto":
        kind = "offline" if profile.model_source == "tiny" else profile.negatives_generator
    if kind == "offline":
        return offline_backend(planned, by_id)
    if kind == "local":
        loaded = load_model(profile)
        print(loaded.describe())
        return TransformersBackend(
            loaded.model, loaded.tokenizer, batch_size=profile.generator_batch_size
        )
    if kind == "openai":
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        name = model or os.environ.get("OPENAI_MODEL")
        if not url or not name:
            raise ConfigError(
                "the 'openai' generator needs a server URL and a model name",
                "set OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1) and OPENAI_MODEL, and "
                "OPENAI_API_KEY for a hosted API.",
            )
        return OpenAIBackend(url, name)
    raise ConfigError(f"unknown generator '{kind}'", "use auto, offline, local or openai.")


def diff_html(original: str, changed: str) -> str:
    """Word-level differences as HTML: removed words struck through in red, new ones in green."""

    a, b = original.split(), changed.split()
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(html.escape(" ".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del style='color:#b00'>{html.escape(' '.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins style='color:#070'>{html.escape(' '.join(b[j1:j2]))}</ins>")
    return " ".join(out)


def side_by_side_html(pair: Pair, max_chars: int = 600) -> str:
    """One pair as a two-column HTML table; minor_replace pairs show their word differences."""

    if pair.negative_type == "minor_replace":
        right = diff_html(pair.chosen, pair.rejected)
    else:
        right = html.escape(pair.rejected[:max_chars])
    return (
        f"<p><b>{pair.negative_type}</b> · author <code>{html.escape(pair.author_id)}</code> · "
        f"real text shown as Response {pair.chosen_position} · k={len(pair.exemplar_ids)}</p>"
        f"<p><i>Prompt:</i> {html.escape(pair.prompt)}</p>"
        "<table style='width:100%;table-layout:fixed'><tr><th>real (chosen)</th>"
        "<th>negative (rejected)</th></tr>"
        f"<tr><td style='vertical-align:top'>{html.escape(pair.chosen[:max_chars])}</td>"
        f"<td style='vertical-align:top'>{right}</td></tr></table>"
    )
