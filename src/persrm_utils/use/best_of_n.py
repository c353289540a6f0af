"""Best-of-N with a personalized reward model: the judge picks, for one user, among N drafts.

A reward model earns its keep only when it steers generation. Best-of-N is the simplest way to
steer: a policy writes N continuations of the user's opening, the PersRM compares them in a
round-robin tournament (every ordered pair, so each draft is shown once as A and once as B and
position bias cancels) and the draft that wins most comparisons is kept.

Whether the pick is any good is judged by two referees that take no part in choosing it:

- the Bradley-Terry reward model of notebook 05, a different model trained on the same pairs:
  how often it still scores the author's *real* continuation above the pick (lower is better:
  the pick is harder to tell from the author);
- the stylometric distance of the pick to the author's other texts (lower is closer).

The same picks are made by a random choice and by the character n-gram baseline of notebook 05,
so the PersRM is compared with "no reward model" and with the classic of authorship attribution.

:class:`PersRMReward` turns the same tournament into a TRL reward function: a policy sample's
reward is its win rate against the other samples of its group, which is what GRPO needs.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from persrm_utils.data.pairs import clean_generation
from persrm_utils.data.stylometry import feature_scale, feature_table, style_distance, text_features
from persrm_utils.errors import DataError
from persrm_utils.evaluate.baselines import TfidfModel, bt_scores, similarity
from persrm_utils.evaluate.metrics import bootstrap_ci
from persrm_utils.generation.requests import GenRequest
from persrm_utils.judge.format import bt_context, compare_messages, full_answer, parse_verdict
from persrm_utils.records import Exemplar
from persrm_utils.train.rewards import completion_text

#: The ways of choosing one draft, in the order tables and plots show them.
METHODS: tuple[str, ...] = ("random", "stylometric (char n-grams)", "PersRM")

POLICY_SYSTEM = "You are a writer. Output only the text asked for."


# --------------------------------------------------------------------------------------------
# Tasks: a held-out author's opening, their real continuation, and exemplars to show the judge
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BonTask:
    """One opening of a held-out author, to write drafts for."""

    task_id: str
    author_id: str
    text_id: str  # the exemplar whose opening is continued; its output is the real text
    prompt: str
    real: str
    exemplar_ids: tuple[str, ...]  # the author's *other* texts, shown to the judge

    def exemplars(self, by_id: Mapping[str, Exemplar]) -> list[Exemplar]:
        return [by_id[i] for i in self.exemplar_ids]


def _stable_int(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def bon_tasks(
    exemplars: Sequence[Exemplar], n_tasks: int, k: int = 2, split: str = "test", seed: int = 0
) -> list[BonTask]:
    """Up to ``n_tasks`` openings from the authors of ``split`` (unseen authors by default).

    Authors take turns (one opening each, then a second round), so a few prolific authors cannot
    fill the list. Each task shows the judge ``k`` of the author's *other* texts, never the text
    being continued: the real continuation is what the picks are measured against.
    """
    by_author: dict[str, list[Exemplar]] = defaultdict(list)
    for ex in exemplars:
        if ex.meta.get("split") == split:
            by_author[ex.author_id].append(ex)
    usable = {a: sorted(xs, key=lambda e: e.text_id) for a, xs in by_author.items()}
    usable = {a: xs for a, xs in usable.items() if len(xs) >= k + 1}
    if not usable:
        raise DataError(
            f"no author of split '{split}' has {k + 1} or more texts (k={k} exemplars + 1 to "
            "continue)",
            "run 01_exemplars with more texts_per_author, or lower k.",
        )
    order = {a: random.Random(_stable_int(seed, a)).sample(xs, len(xs)) for a, xs in usable.items()}
    tasks: list[BonTask] = []
    for round_ in range(max(len(xs) for xs in order.values())):
        for author in sorted(order):
            texts = order[author]
            if round_ >= len(texts) or len(tasks) >= n_tasks:
                continue
            target = texts[round_]
            others = [e.text_id for e in texts if e.text_id != target.text_id][:k]
            tasks.append(
                BonTask(
                    task_id=f"bon-{target.text_id}",
                    author_id=author,
                    text_id=target.text_id,
                    prompt=target.prompt,
                    real=target.output,
                    exemplar_ids=tuple(others),
                )
            )
    return tasks


# --------------------------------------------------------------------------------------------
# The policy's drafts
# --------------------------------------------------------------------------------------------


def policy_messages(prompt: str, target_words: int) -> list[dict[str, str]]:
    """A plain 'continue this' request: the policy knows nothing about the author."""
    user = (
        f"Continue the opening below. Write about {target_words} words. Output only the "
        f"continuation, without the opening.\n\nOpening: {prompt.strip()}"
    )
    return [{"role": "system", "content": POLICY_SYSTEM}, {"role": "user", "content": user}]


def target_words(task: BonTask, cap: int) -> int:
    """As long as the real continuation (at least 10, at most ``cap`` words)."""
    return max(10, min(cap, len(task.real.split())))


def draft_requests(
    tasks: Sequence[BonTask], n: int, max_words: int, temperature: float = 1.0, seed: int = 0
) -> list[Any]:
    """``n`` sampled drafts per task; each draft has its own seed, so each is reproducible."""

    out = []
    for task in tasks:
        words = target_words(task, max_words)
        for j in range(n):
            out.append(
                GenRequest(
                    policy_messages(task.prompt, words),
                    max_new_tokens=2 * words + 16,
                    temperature=temperature,
                    seed=_stable_int(seed, task.task_id, j) % 2**31,
                    meta={"task_id": task.task_id, "draft": j},
                )
            )
    return out


def collect_drafts(
    tasks: Sequence[BonTask], results: Sequence[Any], n: int
) -> dict[str, list[str]]:
    """The cleaned drafts per task, in the order :func:`draft_requests` asked for them."""

    if len(results) != n * len(tasks):
        raise DataError(
            f"{len(results)} generations for {len(tasks)} tasks x {n} drafts",
            "pass the results of generate(draft_requests(tasks, n, ...)) unchanged.",
        )
    return {
        task.task_id: [clean_generation(r.text, task.prompt) for r in results[i * n : (i + 1) * n]]
        for i, task in enumerate(tasks)
    }


# --------------------------------------------------------------------------------------------
# The tournament
# --------------------------------------------------------------------------------------------


@dataclass
class Tournament:
    """Every ordered comparison among one task's drafts, and who won."""

    task_id: str
    wins: list[float]  # per draft: comparisons won
    comparisons: int  # per draft: 2 * (n - 1)
    invalid: int  # comparisons where the judge gave no valid verdict (nobody wins)
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def scores(self) -> list[float]:
        """Win rate of each draft, 0..1."""
        return [w / self.comparisons for w in self.wins]

    @property
    def pick(self) -> int:
        """The draft with most wins; a tie goes to the lowest index (drafts are i.i.d.)."""
        return int(np.argmax(self.wins))

    @property
    def tied(self) -> bool:
        return self.wins.count(max(self.wins)) > 1


def comparison_plan(n: int) -> list[tuple[int, int]]:
    """Every ordered pair (i shown as A, j as B), i != j: n * (n - 1) comparisons."""
    return [(i, j) for i in range(n) for j in range(n) if i != j]


def score_tournament(
    task_id: str, n: int, letters: Sequence[str | None], completions: Sequence[str] = ()
) -> Tournament:
    """Count wins from the judge's letters, one per entry of :func:`comparison_plan`."""
    plan = comparison_plan(n)
    if len(letters) != len(plan):
        raise DataError(
            f"{len(letters)} verdicts for a {n}-draft tournament, which has {len(plan)}",
            "pass one verdict per comparison_plan(n) entry, in that order.",
        )
    wins = [0.0] * n
    invalid = 0
    verdicts = []
    texts = list(completions) or [""] * len(plan)
    for (i, j), letter, text in zip(plan, letters, texts, strict=True):
        if letter == "A":
            wins[i] += 1
        elif letter == "B":
            wins[j] += 1
        else:
            invalid += 1
        verdicts.append({"task_id": task_id, "a": i, "b": j, "letter": letter, "completion": text})
    return Tournament(task_id, wins, 2 * (n - 1), invalid, verdicts)


def tournament_requests(
    task: BonTask,
    drafts: Sequence[str],
    by_id: Mapping[str, Exemplar],
    max_new_tokens: int,
    prefix: str = "",
) -> list[Any]:
    """The judge's requests for one task, in :func:`comparison_plan` order (greedy).

    ``prefix`` is the start of the judge's answer that the harness writes
    (``profile.answer_prefix``; empty unless the judge is verdict-only)."""

    shown = task.exemplars(by_id)
    return [
        GenRequest(
            compare_messages(task.prompt, drafts[i], drafts[j], shown),
            max_new_tokens,
            meta={"task_id": task.task_id, "a": i, "b": j},
            prefix=prefix,
        )
        for i, j in comparison_plan(len(drafts))
    ]


def run_tournaments(
    backend: Any,
    tasks: Sequence[BonTask],
    drafts: Mapping[str, Sequence[str]],
    by_id: Mapping[str, Exemplar],
    max_new_tokens: int,
    prefix: str = "",
) -> dict[str, Tournament]:
    """All tasks' tournaments through one backend call (so a local model batches across tasks).

    Each verdict is read from ``prefix`` + the judge's text (see :func:`tournament_requests`)."""

    requests, spans = [], []
    for task in tasks:
        reqs = tournament_requests(task, drafts[task.task_id], by_id, max_new_tokens, prefix)
        spans.append((task, len(requests), len(requests) + len(reqs)))
        requests += reqs
    results = backend.generate(requests) if requests else []
    out = {}
    for task, start, end in spans:
        texts = [full_answer(prefix, r.text) for r in results[start:end]]
        letters = [parse_verdict(t).letter for t in texts]
        out[task.task_id] = score_tournament(
            task.task_id, len(drafts[task.task_id]), letters, texts
        )
    return out


# --------------------------------------------------------------------------------------------
# The other ways of picking
# --------------------------------------------------------------------------------------------


def random_picks(tasks: Sequence[BonTask], n: int, seed: int = 0) -> dict[str, int]:
    """A draft chosen at random per task (seeded per task, so stable under reordering)."""
    return {t.task_id: random.Random(_stable_int(seed, "random", t.task_id)).randrange(n)
            for t in tasks}  # fmt: skip


def stylometric_picks(
    tasks: Sequence[BonTask],
    drafts: Mapping[str, Sequence[str]],
    by_id: Mapping[str, Exemplar],
    n_gram: int | Sequence[int] = 3,
) -> dict[str, int]:
    """The draft most similar (character n-gram TF-IDF cosine) to the exemplars the judge sees.

    The IDF is fitted on the outputs of every exemplar, as in notebook 05's baseline.
    """

    model = TfidfModel.fit((ex.output for ex in by_id.values()), n_gram)
    out = {}
    for task in tasks:
        profile = model.vector("\n".join(ex.output for ex in task.exemplars(by_id)))
        sims = [similarity(model, profile, d) for d in drafts[task.task_id]]
        out[task.task_id] = int(np.argmax(sims))
    return out


# --------------------------------------------------------------------------------------------
# The referees
# --------------------------------------------------------------------------------------------


def style_distances(
    tasks: Sequence[BonTask],
    texts: Mapping[str, Sequence[str]],
    exemplars: Sequence[Exemplar],
) -> dict[str, list[float]]:
    """Per task, the stylometric distance of each text to the author's *other* texts.

    The author's style is the mean feature vector of all their texts except the one being
    continued (its real continuation is what we compare against, not what we compare with);
    features are scaled by their spread over every exemplar's output, as in notebook 01.
    """

    table = feature_table(exemplars, part="output")
    scale = feature_scale(table)
    out = {}
    for task in tasks:
        mine = table[(table["author_id"] == task.author_id) & (table["text_id"] != task.text_id)]
        if mine.empty:
            raise DataError(
                f"author '{task.author_id}' has no text besides '{task.text_id}'",
                "build the tasks with bon_tasks(), which keeps only authors with k + 1 texts.",
            )
        centre = mine.drop(columns=["author_id", "text_id"]).mean().to_dict()
        out[task.task_id] = [
            style_distance(text_features(t), centre, scale) if t.strip() else float("nan")
            for t in texts[task.task_id]
        ]
    return out


def bt_real_preferred(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[BonTask],
    texts: Mapping[str, Sequence[str]],
    by_id: Mapping[str, Exemplar],
    batch_size: int = 8,
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Does the Bradley-Terry RM score the author's real text above each of ``texts``?

    Returns ``(outcome per task and text: 1 real scored higher, 0.5 tie, 0 lower; the real
    text's score per task)``. Each text is scored on its own after the same context, so the
    outcome cannot depend on an A/B order.
    """

    conversations, index = [], []
    for task in tasks:
        context = bt_context(task.prompt, task.exemplars(by_id))
        for j, text in enumerate([task.real, *texts[task.task_id]]):
            conversations.append([*context, {"role": "assistant", "content": text.strip()}])
            index.append((task.task_id, j))
    scores = bt_scores(model, tokenizer, conversations, batch_size)
    per_task: dict[str, list[float]] = defaultdict(list)
    for (task_id, _), score in zip(index, scores, strict=True):
        per_task[task_id].append(score)
    outcomes, real = {}, {}
    for task in tasks:
        real_score, *others = per_task[task.task_id]
        real[task.task_id] = real_score
        outcomes[task.task_id] = [
            1.0 if real_score > s else 0.5 if real_score == s else 0.0 for s in others
        ]
    return outcomes, real


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def summary_table(
    picks: Mapping[str, Mapping[str, int]],
    distances: Mapping[str, Sequence[float]],
    real_preferred: Mapping[str, Sequence[float]] | None,
    real_distance: Mapping[str, float],
    tournaments: Mapping[str, Tournament],
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per way of picking: the referees' verdicts on the picked drafts, with 95% CIs.

    ``distances`` and ``real_preferred`` hold one value per draft of each task; a method's
    value for a task is the value of the draft it picked. The intervals resample tasks. A last
    row, "author's real text", is the floor of the style distance (what the author wrote).
    """

    rows = []
    for method in [m for m in METHODS if m in picks]:
        chosen = picks[method]
        d = np.array([distances[t][i] for t, i in chosen.items()], dtype=float)
        row: dict[str, Any] = {"method": method, "tasks": len(chosen)}
        if real_preferred is not None:
            r = np.array([real_preferred[t][i] for t, i in chosen.items()], dtype=float)
            low, high = bootstrap_ci(r, n_boot, seed)
            row |= {"real preferred": r.mean(), "rp_low": low, "rp_high": high}
        low, high = bootstrap_ci(d[~np.isnan(d)], n_boot, seed)
        row |= {"style distance": np.nanmean(d), "sd_low": low, "sd_high": high}
        row["PersRM win rate"] = float(
            np.mean([tournaments[t].scores[i] for t, i in chosen.items()])
        )
        rows.append(row)
    real = np.array(list(real_distance.values()), dtype=float)
    low, high = bootstrap_ci(real, n_boot, seed)
    rows.append(
        {
            "method": "author's real text",
            "tasks": len(real),
            "style distance": real.mean(),
            "sd_low": low,
            "sd_high": high,
        }
    )
    return pd.DataFrame(rows)


def records(
    tasks: Sequence[BonTask],
    drafts: Mapping[str, Sequence[str]],
    picks: Mapping[str, Mapping[str, int]],
    tournaments: Mapping[str, Tournament],
    distances: Mapping[str, Sequence[float]],
    real_preferred: Mapping[str, Sequence[float]] | None = None,
) -> list[dict[str, Any]]:
    """One JSON-able row per task for ``bon/drafts.jsonl``: every draft, score and pick."""
    out = []
    for task in tasks:
        t = task.task_id
        out.append(
            asdict(task)
            | {
                "drafts": list(drafts[t]),
                "persrm_scores": tournaments[t].scores,
                "invalid_verdicts": tournaments[t].invalid,
                "style_distance": list(distances[t]),
                "real_preferred": list(real_preferred[t]) if real_preferred else None,
                "picks": {m: p[t] for m, p in picks.items()},
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# The PersRM as a reward for GRPO on a policy
# --------------------------------------------------------------------------------------------


class PersRMReward:
    """A TRL reward function: each completion's win rate against its siblings, by the PersRM.

    GRPO samples ``num_generations`` completions per prompt; this function has the judge compare
    every ordered pair of them (the round-robin tournament above) and rewards each with the
    share of comparisons it won (0..1). A relative reward is what GRPO normalises anyway, and it
    needs no reference text: only the user's exemplars, which the dataset row names by
    ``task_id``. Completions are grouped by ``task_id`` (TRL passes dataset columns as keyword
    arguments, one value per completion).
    """

    __name__ = "persrm_win_rate"  # TRL names the logged reward after the function

    def __init__(
        self,
        backend: Any,
        tasks: Sequence[BonTask],
        by_id: Mapping[str, Exemplar],
        max_new_tokens: int,
        prefix: str = "",
    ) -> None:
        self.backend = backend
        self.prefix = prefix
        self.tasks = {t.task_id: t for t in tasks}
        self.by_id = by_id
        self.max_new_tokens = max_new_tokens
        self.calls = 0
        self.invalid = 0
        self.comparisons = 0

    def __call__(
        self, prompts: list[Any], completions: list[Any], task_id: list[str], **kwargs: Any
    ) -> list[float]:

        texts = [completion_text(c) for c in completions]
        groups: dict[str, list[int]] = defaultdict(list)
        for idx, t in enumerate(task_id):
            groups[t].append(idx)
        drafts = {t: [texts[i] for i in idxs] for t, idxs in groups.items()}
        tasks = [self.tasks[t] for t in groups]
        singles = [t for t, idxs in groups.items() if len(idxs) < 2]
        if singles:
            raise DataError(
                f"task(s) {', '.join(singles[:3])} have a single completion in the batch: no "
                "sibling to compare with",
                "use num_generations >= 2 (GRPO needs a group anyway).",
            )
        tours = run_tournaments(
            self.backend, tasks, drafts, self.by_id, self.max_new_tokens, self.prefix
        )
        rewards = [0.0] * len(texts)
        for t, idxs in groups.items():
            for pos, idx in enumerate(idxs):
                rewards[idx] = tours[t].scores[pos]
            self.invalid += tours[t].invalid
            self.comparisons += len(tours[t].verdicts)
        self.calls += 1
        return rewards


def policy_rows(tasks: Sequence[BonTask], max_words: int) -> list[dict[str, Any]]:
    """GRPO dataset rows for the policy: the 'continue this' prompt and the task it belongs to."""
    return [
        {"prompt": policy_messages(t.prompt, target_words(t, max_words)), "task_id": t.task_id}
        for t in tasks
    ]
