"""Recipe probes: train one small judge with one SFT recipe and measure it on unseen authors.

A tutorial that says "this recipe learns" must be able to show the runs behind the sentence,
including the ones that did not learn. A probe is the shortest path through the series that
still answers the question honestly: the same corpus loader, pair maker, trace writer, trainer,
judge and metrics as notebooks 01-05, with one recipe (negative types, reasoning length, learning
rate, epochs, LoRA rank, user-swap training items) and nothing else (no GRPO, no baselines but
character n-grams). Every probe reports the personalization figures of notebook 05: the exemplar
effect (accuracy with the exemplars minus with none, paired interval) and the user-swap test
(:mod:`persrm_utils.data.user_swap`) on unseen authors, beside accuracy per type.
``scripts/probe_recipes.py`` is its command line.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from persrm_utils.data.exemplars import collect
from persrm_utils.data.pairs import generation_requests, make_pairs, offline_backend, plan_pairs
from persrm_utils.data.user_swap import user_swap_pairs
from persrm_utils.errors import DataError
from persrm_utils.evaluate.baselines import stylometric_baseline, visible_cue_baseline
from persrm_utils.evaluate.likelihood import LIKELIHOOD_NAME, likelihood_baseline
from persrm_utils.evaluate.metrics import (
    accuracy_table,
    exemplar_effect,
    predictions_frame,
    user_swap_difference,
    user_swap_summary,
)
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.generation.local import TransformersBackend
from persrm_utils.judge.judging import judge_pairs
from persrm_utils.models.loader import load_model
from persrm_utils.profiles import get_profile
from persrm_utils.records import LLM_TYPES, Pair, read_jsonl, write_jsonl
from persrm_utils.train.sft import load_with_adapter, train_sft
from persrm_utils.train.traces import reasoning_traces, to_sft_rows
from persrm_utils.train.user_swap_items import choose_user_swap_items


@dataclass(frozen=True)
class ProbeRecipe:
    """One SFT recipe and the data it is measured on (every field is a knob worth probing)."""

    types: tuple[str, ...] = ("cross_author", "minor_replace")
    test_types: tuple[str, ...] = ("cross_author", "minor_replace")
    think: str = "none"  # none | short | full
    epochs: float = 2.0
    learning_rate: float = 1e-3
    lora_r: int = 16
    batch_size: int = 8
    n_train_authors: int = 30
    n_test_authors: int = 12
    texts_per_author: int = 10
    max_output_words: int = 40
    max_exemplars: int = 1
    max_train_pairs: int | None = None
    max_test_pairs: int | None = 100
    gen_budget_s: float = 600.0
    prefill: bool = True  # verdict-only: the harness writes "<think></think><answer>[["
    user_swap_train: int = 0  # user-swap items of training authors added to SFT (4 rows each)
    user_swap_test: int = 100  # user-swap items of unseen authors judged (4 verdicts each)
    # keep only the training user-swap items the untrained model's likelihood reads under both
    # users (judge.likelihood.items_the_model_reads), from this many candidates (None: 3x)
    user_swap_teacher: bool = False
    user_swap_candidates: int | None = None
    # a curriculum's second stage: an earlier stage's adapter is merged into the base model
    # first, and this recipe trains a fresh LoRA on top of it
    init_adapter: str | None = None
    seed: int = 0
    # the profile the recipe's fields override: "cpu" (SmolLM2 on C50) for every measured probe;
    # "smoke" (the tiny model on the built-in texts) lets the tests run the whole probe in seconds
    base: str = "cpu"

    def slug(self) -> str:
        types = "+".join(t.split("_")[0] for t in self.types)
        fill = "" if self.prefill or self.think != "none" else "-noprefill"
        swap = f"-us{self.user_swap_train}" if self.user_swap_train else ""
        swap += "t" if swap and self.user_swap_teacher else ""
        then = "-after" if self.init_adapter else ""
        return (
            f"{types}{swap}{then}-{self.think}{fill}-lr{self.learning_rate:g}-e{self.epochs:g}"
            f"-r{self.lora_r}"
        )

    def profile(self) -> Any:
        """The ``base`` profile (`cpu`) with this recipe's fields."""

        return get_profile(
            self.base,
            n_train_authors=self.n_train_authors,
            n_val_authors=0,
            n_test_authors=self.n_test_authors,
            texts_per_author=self.texts_per_author,
            max_output_words=self.max_output_words,
            max_exemplars=self.max_exemplars,
            lora_r=self.lora_r,
            lora_alpha=2 * self.lora_r,
            sft_learning_rate=self.learning_rate,
            sft_epochs=self.epochs,
            reasoning=self.think,
            answer_prefill=self.prefill,
            max_completion_length={"none": 1 if self.prefill else 24, "short": 96, "full": 224}[
                self.think
            ],
            sft_batch_size=self.batch_size // 2,
            sft_grad_accum=2,
            seen_author_frac=0.1,
            seed=self.seed,
            sft_user_swap_items=self.user_swap_train,
            sft_user_swap_teacher=self.user_swap_teacher,
            sft_user_swap_candidates=self.user_swap_candidates,
        )


def _generate_within_budget(
    planned: list, by_id: dict, profile: Any, cache: Path, budget_s: float
) -> tuple[list, Any, dict[str, Any]]:
    """Generate LLM negatives (test split first) until ``budget_s``; drop the pairs left over."""

    requests = generation_requests(planned, by_id, profile.max_output_words, "rules")
    if not requests:
        return planned, None, {"requested": 0, "generated": 0, "seconds": 0.0}
    if budget_s <= 0:  # the offline writers: instant, deterministic
        generator = CachedGenerator(offline_backend(planned, by_id), cache, flush_every=1000)
        return planned, generator, {"requested": len(requests), "generated": "offline"}
    split_of = {p.pair_id: p.split for p in planned}
    requests.sort(key=lambda r: split_of[r.meta["pair_id"]] != "test")
    loaded = load_model(profile)
    backend = TransformersBackend(
        loaded.model, loaded.tokenizer, batch_size=profile.generator_batch_size
    )
    generator = CachedGenerator(backend, cache)
    start = time.perf_counter()
    done: set[str] = set()
    step = profile.generator_batch_size
    for i in range(0, len(requests), step):
        if time.perf_counter() - start > budget_s:
            break
        chunk = requests[i : i + step]
        generator.generate(chunk, progress=False)
        done.update(r.meta["pair_id"] for r in chunk)
    kept = [p for p in planned if p.negative_type not in LLM_TYPES or p.pair_id in done]
    stats = {
        "requested": len(requests),
        "generated": len(done),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return kept, generator, stats


def _rows(pairs: Sequence[Pair], by_id: dict, think: str) -> tuple[list[dict], dict[str, Any]]:

    traces, stats = reasoning_traces(pairs, by_id, think)  # type: ignore[arg-type]
    return to_sft_rows(traces), stats


def _counts(values: Any) -> dict[str, int]:

    return dict(Counter(str(v) for v in values))


def _table(frame: Any, by: Sequence[str] = ()) -> list[dict[str, Any]]:

    table = accuracy_table(frame, by=list(by))
    return [
        {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
        for row in table.to_dict("records")
    ]


def run_probe(recipe: ProbeRecipe, out: Path) -> dict[str, Any]:
    """Pairs -> SFT with ``recipe`` -> judged unseen-author pairs, both orders; a result dict."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    profile = recipe.profile()
    exemplars = collect(profile)
    by_id = {e.text_id: e for e in exemplars}
    # Every training text becomes a pair of a training type (as in the series' curriculum);
    # the test split deals the test types round-robin.
    planned = plan_pairs(
        exemplars,
        profile.max_exemplars,
        profile.seed,
        types=list(recipe.test_types),  # type: ignore[arg-type]
        train_types=list(recipe.types),  # type: ignore[arg-type]
    )
    planned = [
        p
        for p in planned
        if p.split == "train" or (p.split == "test" and p.negative_type in recipe.test_types)
    ]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    planned, generator, gen_stats = _generate_within_budget(
        planned, by_id, profile, out / "negatives.jsonl", recipe.gen_budget_s
    )
    made = make_pairs(planned, exemplars, generator, profile.max_output_words, "rules", False)
    timings["pairs_s"] = round(time.perf_counter() - t0, 1)
    train = made.pairs["train"][: recipe.max_train_pairs]
    teacher: dict[str, Any] = {}
    if recipe.user_swap_train:
        train += _training_user_swap(profile, by_id, teacher, timings, out)
    test = made.pairs["test"][: recipe.max_test_pairs]

    rows, trace_stats = _rows(train, by_id, recipe.think)
    t0 = time.perf_counter()
    start = _stage_one(profile, recipe.init_adapter)
    result = train_sft(profile, rows, out / "sft", loaded=start)
    timings["sft_s"] = round(time.perf_counter() - t0, 1)

    if recipe.init_adapter:
        from peft import PeftModel

        tuned = _stage_one(profile, recipe.init_adapter)
        tuned.model = PeftModel.from_pretrained(tuned.model, result.adapter_dir).eval()
    else:
        tuned = load_with_adapter(profile, Path(result.adapter_dir))
    new_tokens = profile.max_completion_length
    t0 = time.perf_counter()
    judged = judge_pairs(tuned.model, tuned.tokenizer, test, by_id, new_tokens, "probe",
                         both_orders=True, batch_size=8,
                         prefix=profile.answer_prefix)  # fmt: skip
    timings["judge_s"] = round(time.perf_counter() - t0, 1)
    personal, kept, swap = _personalization(
        recipe, profile, tuned, exemplars, by_id, test, judged, timings
    )
    frame = pd.concat(
        [
            predictions_frame(judged, test, "SFT"),
            predictions_frame(stylometric_baseline(test, by_id), test, "char n-grams"),
            predictions_frame(visible_cue_baseline(test, by_id), test, "visible cues"),
        ]
    )
    save_verdicts(out, {"test": [frame, *kept.pop("test")], **kept}, swap)
    return {
        "recipe": asdict(recipe),
        "n_train_pairs": len(train),
        "n_train_rows": len(rows),
        "n_test_pairs": len(test),
        "train_types": _counts(p.negative_type for p in train),
        "generation": gen_stats,
        "user_swap_teacher": teacher,
        "traces": {k: v for k, v in trace_stats.items() if k != "by_negative_type"},
        "sft": {
            "steps": result.steps,
            "loss_first": result.start_loss,
            "loss_last": result.end_loss,
            "loss_tail_mean": round(
                sum(v for _, v in result.losses[-5:]) / max(1, len(result.losses[-5:])), 4
            ),
        },
        "timings": timings,
        "personalization": personal,
        "overall": _table(frame),
        "by_type": _table(frame, ["negative_type"]),
        "reasons": _counts(j.reason for j in judged),
    }


def _training_user_swap(
    profile: Any, by_id: dict, teacher: dict[str, Any], timings: dict[str, float], out: Path
) -> list[Pair]:
    """The training authors' user-swap items SFT sees, chosen as notebook 03 chooses them
    (:func:`~persrm_utils.train.user_swap_items.choose_user_swap_items`, from the recipe's
    ``sft_user_swap_*`` fields); with the teacher, ``teacher`` receives the candidates, the
    kept and used items and the teacher's accuracy, and ``timings`` its seconds. The choice is
    cached in the probe's folder as in a run's: a probe started again after a stop (SFT
    resumes from its checkpoint) does not pay the teacher's pass a second time.
    """
    items, report = choose_user_swap_items(profile, by_id, run_path=out)
    if report["teacher"] is not None:
        timings["teacher_s"] = report["seconds"]
        teacher.update({key: report[key] for key in ("candidates", "kept", "accuracy", "used")})
        teacher["cached"] = report["cached"]
    return items


def _stage_one(profile: Any, adapter: str | None) -> Any:
    """The base model, with an earlier stage's adapter merged in when there is one.

    Merging (rather than training the same adapter on) makes the second stage a fresh LoRA
    whose effect can be measured on its own, and needs no optimizer state from the first.
    """
    loaded = load_model(profile)
    if adapter:
        from peft import PeftModel

        loaded.model = PeftModel.from_pretrained(loaded.model, adapter).merge_and_unload()
        loaded.source = f"{loaded.source} + {adapter} (merged)"
    return loaded


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}


def _personalization(
    recipe: ProbeRecipe,
    profile: Any,
    tuned: Any,
    exemplars: Sequence[Any],
    by_id: dict,
    test: Sequence[Pair],
    judged: Sequence[Any],
    timings: dict[str, float],
) -> tuple[dict[str, Any], dict[str, list[Any]], list[Pair]]:
    """Exemplar effect (the test pairs again at k = 0, paired) and the user-swap test.

    Returns the figures, the verdict frames behind them by set (``"test"``: the k = 0 verdicts;
    ``"user_swap"``) and the user-swap pairs, which :func:`save_verdicts` keeps.
    """
    new_tokens, prefix = profile.max_completion_length, profile.answer_prefix
    t0 = time.perf_counter()
    blind = judge_pairs(tuned.model, tuned.tokenizer, test, by_id, new_tokens, "probe k=0",
                        both_orders=True, batch_size=8, k=0, prefix=prefix)  # fmt: skip
    blind_frame = predictions_frame(blind, test, "SFT, k=0", k=0)
    effect = exemplar_effect(predictions_frame(judged, test, "SFT"), blind_frame)
    timings["judge_k0_s"] = round(time.perf_counter() - t0, 1)
    out: dict[str, Any] = {"exemplar_effect": _rounded(effect)}
    kept: dict[str, list[Any]] = {"test": [blind_frame]}
    swap: list[Pair] = []
    if recipe.user_swap_test:
        swap = user_swap_pairs(
            exemplars, "test", recipe.user_swap_test, profile.max_exemplars, profile.seed
        )
        t0 = time.perf_counter()
        verdicts = judge_pairs(tuned.model, tuned.tokenizer, swap, by_id, new_tokens,
                               "probe user-swap", both_orders=True, batch_size=8,
                               prefix=prefix)  # fmt: skip
        timings["judge_user_swap_s"] = round(time.perf_counter() - t0, 1)
        ngrams = stylometric_baseline(swap, by_id)
        out["user_swap"] = _rounded(
            user_swap_summary(predictions_frame(verdicts, swap, "SFT"), swap)
        )
        out["user_swap_char_ngrams"] = _rounded(
            user_swap_summary(predictions_frame(ngrams, swap, "char n-grams"), swap)
        )
        cues = visible_cue_baseline(swap, by_id)  # what the short reasoning's cues decide
        out["user_swap_visible_cues"] = _rounded(
            user_swap_summary(predictions_frame(cues, swap, "visible cues"), swap)
        )
        kept["user_swap"] = [
            predictions_frame(verdicts, swap, "SFT"),
            predictions_frame(ngrams, swap, "char n-grams"),
            predictions_frame(cues, swap, "visible cues"),
        ]
        if not recipe.init_adapter:  # with one, the model under the adapter is not the base
            t0 = time.perf_counter()
            with tuned.model.disable_adapter():  # the base model: what it knew before SFT
                pmi = likelihood_baseline(tuned.model, tuned.tokenizer, swap, by_id)
            timings["likelihood_user_swap_s"] = round(time.perf_counter() - t0, 1)
            out["user_swap_likelihood"] = _rounded(
                user_swap_summary(predictions_frame(pmi, swap, LIKELIHOOD_NAME), swap)
            )
            kept["user_swap"].append(predictions_frame(pmi, swap, LIKELIHOOD_NAME))
    return out, kept, swap


#: What a probe keeps in its folder, so that two probes of the same seed can be paired later.
VERDICTS_FILE = "verdicts.csv"
SWAP_PAIRS_FILE = "user_swap_pairs.jsonl"


def save_verdicts(out: Path, frames: dict[str, list[Any]], swap_pairs: Sequence[Pair]) -> Path:
    """Write every verdict of a probe (one row per pair and order, ``set`` = test or user_swap)
    and the user-swap pairs they were judged on.

    Why: the probe log keeps only summaries, so two recipes on the same seed could be compared
    only side by side, and two overlapping intervals say little about a 0.02 difference that a
    paired interval over the same items can settle (:func:`compare_probes`).
    """
    import pandas as pd

    parts = [f.assign(set=name) for name, fs in frames.items() for f in fs]
    path = out / VERDICTS_FILE
    pd.concat(parts, ignore_index=True).to_csv(path, index=False)
    write_jsonl(out / SWAP_PAIRS_FILE, swap_pairs)
    return path


def _read_probe(folder: Path, model: str) -> tuple[Any, list[Pair]]:
    import pandas as pd

    path, pairs_path = folder / VERDICTS_FILE, folder / SWAP_PAIRS_FILE
    for p in (path, pairs_path):
        if not p.is_file():
            raise DataError(
                "the file is missing",
                "run the probe again with scripts/probe_recipes.py (probes keep their verdicts "
                f"in {VERDICTS_FILE} and {SWAP_PAIRS_FILE} since this was added).",
                path=str(p),
            )
    every = pd.read_csv(path)
    frame = every[(every["set"] == "user_swap") & (every["model"] == model)]
    if frame.empty:
        raise DataError(
            f"no user-swap verdicts of model '{model}'",
            "name one of: " + ", ".join(sorted(every["model"].unique())),
            path=str(path),
        )
    return frame, read_jsonl(pairs_path, Pair)


def compare_probes(
    x: Path, y: Path, model_x: str = "SFT", model_y: str = "SFT"
) -> dict[str, float | int]:
    """User-swap accuracy of ``model_x`` in probe ``x`` minus ``model_y`` in probe ``y``, paired
    over the items both judged (:func:`~persrm_utils.evaluate.metrics.user_swap_difference`).

    Both probes must have judged the same items: the same seed, authors, texts and k. Items are
    matched by their pairs' ids *and* their texts and exemplars, so a probe with longer texts
    (``--words``) is refused instead of being paired on different questions.
    """
    fx, px = _read_probe(x, model_x)
    fy, py = _read_probe(y, model_y)
    same = {p.pair_id: (p.chosen, p.rejected, tuple(p.exemplar_ids)) for p in px}
    other = {p.pair_id: (p.chosen, p.rejected, tuple(p.exemplar_ids)) for p in py}
    shared = [p for p in px if other.get(p.pair_id) == same[p.pair_id]]
    if not shared:
        raise DataError(
            f"{x} and {y} judged no user-swap item in common",
            "compare probes of the same seed, authors, texts and k.",
        )
    if same != other:
        raise DataError(
            f"{x} and {y} judged different user-swap items "
            f"({len(shared)} of their {len(same)} and {len(other)} user-swap pairs in common)",
            "compare probes of the same seed, authors, texts, k and --user-swap-test.",
        )
    return user_swap_difference(fx, fy, px)
