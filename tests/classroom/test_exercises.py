"""The exercise checks: right answers pass, unanswered ones wait quietly, wrong ones explain.

The checks read a run folder. A real one takes minutes to make, so these tests build a small one
from the package's own functions in a second: the seed corpus, offline pairs, the random
baseline's predictions and a few best-of-N rows. The solutions notebooks are executed against a
real smoke run in test_notebooks.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
import math
import re
from collections import Counter
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from persrm_utils import classroom as ex
from persrm_utils.by_hand.memory import ARCHS, NF4_BYTES
from persrm_utils.classroom.checks import ExerciseError
from persrm_utils.cli import main
from persrm_utils.data.corpus import exemplars_from_texts, load_seed
from persrm_utils.data.exemplars import assign_splits, select
from persrm_utils.data.pairs import changed_words, make_pairs, offline_backend, plan_pairs
from persrm_utils.data.stylometry import author_profiles
from persrm_utils.errors import ConfigError, MissingInputsError
from persrm_utils.evaluate.baselines import random_baseline
from persrm_utils.evaluate.held_out import predictions_records
from persrm_utils.evaluate.metrics import accuracy_table, bootstrap_ci, predictions_frame
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.judge.format import NO_EXEMPLARS, QUESTION
from persrm_utils.judge.judging import Judgement
from persrm_utils.profiles import get_profile
from persrm_utils.records import Pair, read_jsonl, write_jsonl
from persrm_utils.run.folders import RunFolder, StageRecord
from persrm_utils.setup.notebooks import series_notebooks, solutions_name, solutions_notebooks
from persrm_utils.train.rewards import advantages
from persrm_utils.use.best_of_n import comparison_plan

CHECKS = {
    name: fn
    for name, fn in inspect.getmembers(ex, inspect.isfunction)
    if re.fullmatch(r"check_0\d_(warmup|core|stretch)", name)
}
#: The by-hand exercises of 03 and 04: the learner writes a function, the check compares it with
#: the library on fresh tensors. They follow the knob exercises, one markdown cell and one check.
BY_HAND = {"03": ("check_03_lora", "check_03_nf4"), "04": ("check_04_surrogate",)}
MY_TEXTS = [
    "I started running in the dark months. The first week was miserable, the second worse.",
    "Our kitchen table is where everything happens. Homework, arguments, a puzzle.",
    "The train was late again, so I read. Forty minutes is a long time on a platform.",
]


# ----------------------------------------------------------------------------------------------
# A small run folder, made in a second with the package's own functions
# ----------------------------------------------------------------------------------------------


def _done(run: RunFolder, stage: str, files: list[Path], versions: dict | None = None) -> None:
    """Mark a stage done with its artifacts (no hardware probe: that imports torch)."""
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    run.manifest.stages[stage] = StageRecord(
        status="running", started_at=now, versions=versions or {}
    )
    run.save()  # finish_stage reads the manifest from disk: the record must be written first
    run.finish_stage(stage, files)


def _make_pairs(run: RunFolder, exemplars: list) -> dict[str, list[Pair]]:
    profile = get_profile("smoke")
    by_id = {e.text_id: e for e in exemplars}
    planned = plan_pairs(exemplars, profile.max_exemplars, profile.seed)
    generator = CachedGenerator(offline_backend(planned, by_id), run.file("cache/negatives.jsonl"))
    result = make_pairs(planned, exemplars, generator, max_words=profile.max_output_words,
                        minor_replace_writer="rules", progress=False)  # fmt: skip
    for split, pairs in result.pairs.items():
        write_jsonl(run.file(f"pairs/{split}.jsonl"), pairs)
    return result.pairs


def _predictions(run: RunFolder, pairs: dict[str, list[Pair]]) -> None:
    """Three judges as notebook 05 saves them: random, always "A", and one that never answers."""
    held_out = pairs["test"] + pairs["seen_test"]
    judged = {"random": random_baseline(held_out, seed=0)}
    judged["always A"] = [Judgement(j.pair_id, j.negative_type, j.swap, j.label, "A", "ok", "")
                          for j in judged["random"]]  # fmt: skip
    judged["silent"] = [Judgement(j.pair_id, j.negative_type, j.swap, j.label, None,
                                  "no_answer_tag", "") for j in judged["random"]]  # fmt: skip
    with run.file("eval/predictions.jsonl").open("w") as fh:
        for row in predictions_records(judged):
            fh.write(json.dumps(row) + "\n")
    frame = pd.concat([predictions_frame(js, held_out, m) for m, js in judged.items()])
    overall = accuracy_table(frame[frame["seen"] == "unseen"])
    overall.to_csv(run.file("eval/overall.csv"), index=False)


def _best_of_n(run: RunFolder) -> None:
    rows = [
        {"task_id": "bon-a", "style_distance": [3.0, 1.5, float("nan")], "picks": {"PersRM": 0}},
        {"task_id": "bon-b", "style_distance": [2.0, 4.0, 0.5], "picks": {"PersRM": 1}},
    ]
    run.file("bon/drafts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    info = {"tasks": 2, "drafts": 3, "comparisons": 2 * len(comparison_plan(3))}
    run.file("bon/info.json").write_text(json.dumps(info))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunFolder:
    folder = RunFolder.create("ex", "smoke", root=tmp_path_factory.mktemp("runs"))
    env = folder.file("environment.json")
    env.write_text(json.dumps({"profile": {"name": "smoke"}}))
    _done(folder, "00_setup", [env], {"trl": "1.14.2", "transformers": "5.17.0"})
    profile = get_profile("smoke")
    own = exemplars_from_texts("me", MY_TEXTS)
    exemplars = assign_splits(select(load_seed(), profile), profile, own=own)
    write_jsonl(folder.file("exemplars.jsonl"), exemplars)
    author_profiles(exemplars).to_csv(folder.file("factors.csv"))
    _done(folder, "01_exemplars", [folder.path / "exemplars.jsonl"])
    pairs = _make_pairs(folder, exemplars)
    _predictions(folder, pairs)
    _best_of_n(folder)
    return folder


def _out(capsys) -> str:
    return capsys.readouterr().out


def _call(name: str, answer, run: RunFolder):
    fn = getattr(ex, name)
    return fn(answer, run.path) if "run" in inspect.signature(fn).parameters else fn(answer)


# ----------------------------------------------------------------------------------------------
# Every check: one per notebook and tier, None waits, the error is an AssertionError
# ----------------------------------------------------------------------------------------------


def test_one_documented_check_per_notebook_and_tier():
    expected = {f"check_{p.name[:2]}_{t}" for p in series_notebooks()
                for t in ("warmup", "core", "stretch")}  # fmt: skip
    assert set(CHECKS) == expected
    for name, fn in CHECKS.items():
        assert fn.__doc__ and "erif" in fn.__doc__, f"{name}: say what it verifies"
    assert issubclass(ExerciseError, AssertionError)


def test_the_by_hand_exercises_are_documented_checks():
    for names in BY_HAND.values():
        for name in names:
            fn = getattr(ex, name)
            assert name in ex.__all__ and fn.__doc__ and "erif" in fn.__doc__, name


@pytest.mark.parametrize("name", sorted(CHECKS) + [n for ns in BY_HAND.values() for n in ns])
def test_an_unanswered_exercise_prints_a_hint_and_does_not_raise(name, run, capsys):
    assert not _call(name, None, run)
    out = _out(capsys)
    assert out.startswith("Not answered yet: ") and out.count("\n") == 1


# ----------------------------------------------------------------------------------------------
# 00 · Set-up
# ----------------------------------------------------------------------------------------------


def test_00_versions_and_hash_come_from_the_manifest(run, capsys):
    assert ex.check_00_warmup({"trl": "1.14.2", "transformers": "5.17.0"}, run.path)
    digest = hashlib.sha256((run.path / "environment.json").read_bytes()).hexdigest()
    assert ex.check_00_core(digest, run)
    assert _out(capsys).count("OK: ") == 2
    with pytest.raises(ExerciseError, match=r"Expected \{'trl': '1.14.2'.*Hint: "):
        ex.check_00_warmup({"trl": "9.9", "transformers": "5.17.0"}, run)
    with pytest.raises(ExerciseError, match=r"SHA-256 of the file's \*name\*"):
        ex.check_00_core(hashlib.sha256(str(run.path / "environment.json").encode()).hexdigest(),
                         run)  # fmt: skip
    with pytest.raises(ExerciseError, match=r"binary mode"):
        ex.check_00_core(hashlib.sha256(b"something else").hexdigest(), run)


def test_00_stretch_needs_a_real_field_with_a_refused_value(run, capsys):
    try:
        get_profile("smoke", lora_r=0)
    except ConfigError as err:
        caught = err
    assert ex.check_00_stretch({"field": "lora_r", "value": 0, "error": caught}, run)
    assert "lora_r=0 is refused" in _out(capsys)
    with pytest.raises(ExerciseError, match=r"typo case"):
        ex.check_00_stretch({"field": "lora_rank", "value": 8, "error": caught}, run)
    with pytest.raises(ExerciseError, match=r"is accepted: that value is valid"):
        ex.check_00_stretch({"field": "lora_r", "value": 8, "error": caught}, run)
    with pytest.raises(ExerciseError, match=r"should be the ConfigError"):
        ex.check_00_stretch({"field": "lora_r", "value": 0, "error": "oops"}, run)


# ----------------------------------------------------------------------------------------------
# 01 · Exemplars
# ----------------------------------------------------------------------------------------------


def test_01_warmup_counts_words_per_sentence(capsys):
    text = "I run every morning. The streets are quiet at six."
    assert ex.check_01_warmup({"text": text, "mean_sentence_len": 5.0})
    assert "OK: 2 sentences" in _out(capsys)
    with pytest.raises(ExerciseError, match=r"measures 5.00, you have 4.00.*\[4, 6\] words"):
        ex.check_01_warmup({"text": text, "mean_sentence_len": 4})
    with pytest.raises(ExerciseError, match=r"at least two sentences"):
        ex.check_01_warmup({"text": "Only one.", "mean_sentence_len": 2})
    with pytest.raises(ExerciseError, match=r"should be a number"):
        ex.check_01_warmup({"text": text, "mean_sentence_len": "5"})


def test_01_core_recomputes_the_factor_table(run, capsys):
    factors = pd.read_csv(run.path / "factors.csv", index_col=0)
    right = {"longest_sentences": factors["mean_sentence_len"].idxmax(),
             "most_numbers": factors["number_per100"].idxmax()}  # fmt: skip
    assert ex.check_01_core(right, run)
    assert "OK: " in _out(capsys)
    shortest = factors["mean_sentence_len"].idxmin()
    with pytest.raises(ExerciseError, match=f"you named '{shortest}'.*Hint: factors.csv"):
        ex.check_01_core({**right, "longest_sentences": shortest}, run)
    with pytest.raises(ExerciseError, match=r"lacks the key"):
        ex.check_01_core({"longest": "x"}, run)


def _write_texts(path: Path, texts: list[str], author: str = "learner") -> Path:
    lines = [json.dumps({"author_id": author, "text_id": f"{author}/{i}", "text": t})
             for i, t in enumerate(texts)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def test_01_stretch_reads_the_file_back_and_measures_distances(run, tmp_path, capsys):
    texts = ["Short ones. Very short.", "We went out. It rained all day, as usual.",
             "Numbers: 3, 4 and 5. That is all, really."]  # fmt: skip
    path = _write_texts(tmp_path / "mine.jsonl", texts)
    with pytest.raises(ExerciseError, match=r"The closest author is '([\w-]+)'") as err:
        ex.check_01_stretch({"file": path, "closest_author": "nobody"}, run)
    closest = re.search(r"The closest author is '([\w-]+)'", str(err.value)).group(1)
    assert ex.check_01_stretch({"file": str(path), "closest_author": closest}, run)
    assert f"closest in style: {closest}" in _out(capsys)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"author": "me", "text": "A. B."}\n')
    with pytest.raises(ExerciseError, match=r"load_own_texts cannot read your file.*line 1"):
        ex.check_01_stretch({"file": bad, "closest_author": closest}, run)
    two = _write_texts(tmp_path / "two.jsonl", texts[:2])
    with pytest.raises(ExerciseError, match=r"expected three or more texts by one author"):
        ex.check_01_stretch({"file": two, "closest_author": closest}, run)


# ----------------------------------------------------------------------------------------------
# 02 · Pairs
# ----------------------------------------------------------------------------------------------


def _all_pairs(run: RunFolder) -> list[Pair]:
    return [p for s in ("train", "val", "test", "seen_test")
            for p in read_jsonl(run.path / "pairs" / f"{s}.jsonl", Pair)]  # fmt: skip


def test_02_warmup_counts_every_split(run, capsys):
    counts = Counter(p.negative_type for p in _all_pairs(run))
    assert ex.check_02_warmup(counts, run)
    assert f"OK: {sum(counts.values())} pairs" in _out(capsys)
    test_only = Counter(p.negative_type for p in read_jsonl(run.path / "pairs/test.jsonl", Pair))
    with pytest.raises(ExerciseError, match=r"all four splits.*Hint: read pairs/train"):
        ex.check_02_warmup(test_only, run)


def _count_and_numbers(chosen: str, rejected: str) -> bool:
    same = re.findall(r"\d[\d,.]*", chosen) == re.findall(r"\d[\d,.]*", rejected)
    return 2 <= changed_words(chosen, rejected) <= 6 and same


def test_02_core_runs_the_learners_filter_against_check_negative(run, capsys):
    assert ex.check_02_core(_count_and_numbers, run)
    assert "agrees with check_negative on all" in _out(capsys)

    def count_only(chosen: str, rejected: str) -> bool:
        return 2 <= changed_words(chosen, rejected) <= 6

    with pytest.raises(ExerciseError, match=r"turned into a number.*minor_replace_facts"):
        ex.check_02_core(count_only, run)
    with pytest.raises(ExerciseError, match=r"raised ZeroDivisionError.*on the kept"):
        ex.check_02_core(lambda c, r: 1 / 0, run)
    with pytest.raises(ExerciseError, match=r"returned 'yes'"):
        ex.check_02_core(lambda c, r: "yes", run)
    with pytest.raises(ExerciseError, match=r"Expected a function"):
        ex.check_02_core(_count_and_numbers("a b", "a c"), run)


def test_02_stretch_checks_each_filter_reason(run, capsys):
    pair = read_jsonl(run.path / "pairs" / "test.jsonl", Pair)[0]
    words = pair.chosen.split()
    near = " ".join([*words[:-1], "banana."])
    short = " ".join(words[: len(words) // 4])
    others = [p.chosen for p in _all_pairs(run) if p.author_id != pair.author_id]
    other = min(others, key=lambda text: abs(len(text.split()) - len(words)))
    answer = {"near_identical": near, "length_outlier": short, "kept": other}
    assert ex.check_02_stretch(answer, run)
    assert "OK: " in _out(capsys)
    with pytest.raises(ExerciseError, match=r"'near_identical'.*kept, expected dropped"):
        ex.check_02_stretch({**answer, "near_identical": other}, run)
    with pytest.raises(ExerciseError, match=r"'kept'.*dropped as 'near_identical'"):
        ex.check_02_stretch({**answer, "kept": pair.chosen}, run)


# ----------------------------------------------------------------------------------------------
# 03 · SFT
# ----------------------------------------------------------------------------------------------


def test_03_warmup_qlora_bytes_and_the_usual_slips(capsys):
    arch = ARCHS[ex.MODEL_03]
    emb = arch.embedding_parameters()
    assert ex.check_03_warmup((arch.parameters() - emb) * NF4_BYTES + emb * 2)
    assert "GB of frozen weights" in _out(capsys)
    with pytest.raises(ExerciseError, match=r"full fine-tuning"):
        ex.check_03_warmup(arch.parameters() * 16)
    with pytest.raises(ExerciseError, match=r"embeddings are not quantized"):
        ex.check_03_warmup(arch.parameters() * NF4_BYTES)
    with pytest.raises(ExerciseError, match=r"Expected about"):
        ex.check_03_warmup(12345)


def test_03_core_one_output_per_invalid_reason(capsys):
    outputs = {
        "no_answer_tag": "<think>x</think> A",
        "answer_inside_think": "<think><answer>[[A]]</answer></think>",
        "unclosed_think": "<think>x",
        "truncated": "<think>x</think><answer>[[A",
        "both_letters": "<think>x</think><answer>[[A]][[B]]</answer>",
        "no_letter": "<think>x</think><answer>a</answer>",
    }
    assert ex.check_03_core(outputs)
    assert "all 6 ways" in _out(capsys)
    with pytest.raises(ExerciseError, match=r"parses as 'ok', expected 'no_letter'.*Hint: a final"):
        ex.check_03_core({**outputs, "no_letter": "<think>x</think><answer>[[A]]</answer>"})
    with pytest.raises(ExerciseError, match=r"lacks the key"):
        ex.check_03_core({"truncated": "<think>x</think><answer>[[A"})


def test_03_stretch_the_k0_swapped_prompt(run, capsys):
    pair = read_jsonl(run.path / "pairs" / "test.jsonl", Pair)[0]
    blocks = [NO_EXEMPLARS, f"[Prompt] {pair.prompt.strip()}",
              f"[Response A] {pair.response_b.strip()}",
              f"[Response B] {pair.response_a.strip()}", QUESTION]  # fmt: skip
    real = "B" if pair.chosen_position == "A" else "A"
    assert ex.check_03_stretch({"user": "\n\n".join(blocks), "label": real}, run)
    assert f"Response {real}" in _out(capsys)
    unswapped = [*blocks[:2], blocks[3].replace("[Response B]", "[Response A]"),
                 blocks[2].replace("[Response A]", "[Response B]"), QUESTION]  # fmt: skip
    with pytest.raises(
        ExerciseError, match=r"Line 5 of your message differs.*'\[Response A\] .*pair.response_b"
    ):
        ex.check_03_stretch({"user": "\n\n".join(unswapped), "label": real}, run)
    with pytest.raises(ExerciseError, match=f"shown as {real} after the swap"):
        ex.check_03_stretch({"user": "\n\n".join(blocks), "label": pair.chosen_position}, run)


def lora_right(layer, x, A, B, alpha, r):
    return layer(x) + (alpha / r) * (x @ A.T) @ B.T


def test_03_lora_is_compared_with_peft_and_names_the_usual_slips(capsys):
    assert ex.check_03_lora(lora_right)
    assert "equals peft's LoraLayer" in _out(capsys)
    slips = {
        "multiply B \\(A x\\) by alpha / r": lambda layer, x, A, B, alpha, r: (
            layer(x) + (x @ A.T) @ B.T
        ),
        "scale upside down": lambda layer, x, A, B, alpha, r: (
            layer(x) + (r / alpha) * (x @ A.T) @ B.T
        ),
        "add the frozen layer's output": lambda layer, x, A, B, alpha, r: (
            (alpha / r) * (x @ A.T) @ B.T
        ),
        "without the bias": lambda layer, x, A, B, alpha, r: (
            x @ layer.weight.T + (alpha / r) * (x @ A.T) @ B.T
        ),
        # A and B in the wrong order: the shapes do not fit, and the hint says which is which
        "A is r x in and B is out x r": lambda layer, x, A, B, alpha, r: (
            layer(x) + (alpha / r) * (x @ B.T) @ A.T
        ),
        "torch tensor": lambda layer, x, A, B, alpha, r: layer(x).tolist(),
    }
    for hint, wrong in slips.items():
        with pytest.raises(ExerciseError, match=hint):
            ex.check_03_lora(wrong)
    with pytest.raises(ExerciseError, match=r"Expected a function lora_forward"):
        ex.check_03_lora("layer(x) + (alpha / r) * (x @ A.T) @ B.T")


def _blocks(weight, code, size):
    blocks = weight.reshape(-1, size)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    index = ((blocks / absmax).unsqueeze(-1) - code).abs().argmin(dim=-1)
    return (code[index] * absmax).reshape(weight.shape)


def nf4_right(weight, code):
    blocks = weight.reshape(-1, 64)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    index = ((blocks / absmax).unsqueeze(-1) - code).abs().argmin(dim=-1)
    return (code[index] * absmax).reshape(weight.shape)


def test_03_nf4_is_compared_with_bitsandbytes_and_names_the_usual_slips(capsys):
    assert ex.check_03_nf4(nf4_right)
    assert "equals bitsandbytes'" in _out(capsys)

    def per_tensor(weight, code):
        absmax = weight.abs().max()
        return code[((weight / absmax).unsqueeze(-1) - code).abs().argmin(dim=-1)] * absmax

    def no_rescale(weight, code):
        blocks = weight.reshape(-1, 64)
        index = ((blocks / blocks.abs().amax(1, keepdim=True)).unsqueeze(-1) - code).abs()
        return code[index.argmin(dim=-1)].reshape(weight.shape)

    def by_column(weight, code):
        return nf4_right(weight.T.contiguous(), code).T

    def indices(weight, code):
        blocks = weight.reshape(-1, 64)
        index = ((blocks / blocks.abs().amax(1, keepdim=True)).unsqueeze(-1) - code).abs()
        return index.argmin(dim=-1)

    slips = {
        "one absmax for the whole tensor": per_tensor,
        "multiply each level by its block's absmax": no_rescale,
        "down the columns": by_column,
        "the 4-bit indices": indices,
        "reshape the result back": lambda weight, code: nf4_right(weight, code).flatten(),
        "blocks of 64 weights": lambda weight, code: _blocks(weight, code, 32),
    }
    for hint, wrong in slips.items():
        with pytest.raises(ExerciseError, match=hint):
            ex.check_03_nf4(wrong)


# ----------------------------------------------------------------------------------------------
# 04 · GRPO
# ----------------------------------------------------------------------------------------------


def test_04_warmup_advantages_by_hand(capsys):
    by_hand = []
    for start in range(0, len(ex.REWARDS_04), ex.GROUP_04):
        group = np.array(ex.REWARDS_04[start : start + ex.GROUP_04])
        by_hand += list((group - group.mean()) / (group.std() + 1e-4))
    assert ex.check_04_warmup(by_hand)
    assert "group(s) [2] have advantage 0" in _out(capsys)
    sample_std = []
    for start in range(0, len(ex.REWARDS_04), ex.GROUP_04):
        group = np.array(ex.REWARDS_04[start : start + ex.GROUP_04])
        sample_std += list((group - group.mean()) / (group.std(ddof=1) + 1e-4))
    with pytest.raises(ExerciseError, match=r"answer\[0\].*population std"):
        ex.check_04_warmup(sample_std)
    with pytest.raises(ExerciseError, match=r"list of 8 advantages"):
        ex.check_04_warmup(advantages(ex.REWARDS_04, ex.GROUP_04)[:4])


def test_04_core_hacks_must_contain_the_letter_and_score_minus_one(capsys):
    hacks = ["<answer>[[A]]</answer>", "<think>[[A]]</think>",
             "<think>x</think><answer>[[A]][[B]]</answer>"]  # fmt: skip
    assert ex.check_04_core(hacks)
    assert "all 3 hacks score -1" in _out(capsys)
    with pytest.raises(ExerciseError, match=r"right, reasoned answer"):
        ex.check_04_core([*hacks[:2], "<think>x</think>\n<answer>[[A]]</answer>"])
    with pytest.raises(ExerciseError, match=r"has no \[\[A\]\]"):
        ex.check_04_core([*hacks[:2], "B"])
    with pytest.raises(ExerciseError, match=r"three or more different"):
        ex.check_04_core(hacks[:1] * 3)


def test_04_stretch_wrong_answers_with_four_different_totals(capsys):
    group = ["", "<think>x", "<think>x</think> <answer>[[B]]</answer> ok",
             "<think>x</think>\n<answer>[[B]]</answer>"]  # fmt: skip
    assert ex.check_04_stretch(group)
    assert "frac_reward_zero_std 0" in _out(capsys)
    with pytest.raises(ExerciseError, match=r"some are equal"):
        ex.check_04_stretch(["", "", "<think>x", "<think>x</think>\n<answer>[[B]]</answer>"])
    with pytest.raises(ExerciseError, match=r"Completion 3 is a right answer"):
        ex.check_04_stretch([*group[:3], "<think>x</think>\n<answer>[[A]]</answer>"])


def surrogate_right(logp_new, logp_old, advantages, eps_low, eps_high):
    ratio = torch.exp(logp_new - logp_old)
    adv = advantages[:, None]
    return -torch.min(ratio * adv, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv)


def test_04_surrogate_is_compared_with_the_package_and_names_the_usual_slips(capsys):
    assert ex.check_04_surrogate(surrogate_right)
    out = _out(capsys)
    assert "values and gradient" in out and "clipped: no gradient" in out

    def variant(combine=torch.min, clip=True, high=None, sign=-1.0, detach=False, adv_col=True):
        def fn(logp_new, logp_old, advantages, eps_low, eps_high):
            ratio = torch.exp(logp_new - logp_old)
            ratio = ratio.detach() if detach else ratio
            adv = advantages[:, None] if adv_col else advantages
            top = 1 + (eps_high if high is None else high(eps_low, eps_high))
            clipped = torch.clamp(ratio, 1 - eps_low, top) if clip else ratio
            return sign * combine(ratio * adv, clipped * adv)

        return fn

    slips = {
        "max instead of min": variant(combine=torch.max),
        "unclipped term alone": variant(clip=False),
        "upper bound is 1 \\+ eps_high": variant(high=lambda low, high: low),
        "minus the objective": variant(sign=1.0),
        "no gradient with respect to logp_new": variant(detach=True),
        "advantages\\[:, None\\]": variant(adv_col=False),
    }
    for hint, wrong in slips.items():
        with pytest.raises(ExerciseError, match=hint):
            ex.check_04_surrogate(wrong)


# ----------------------------------------------------------------------------------------------
# 05 · Evaluation
# ----------------------------------------------------------------------------------------------


def test_05_warmup_reads_the_best_model_and_its_interval(run, capsys):
    table = pd.read_csv(run.path / "eval" / "overall.csv")
    best = table.loc[table["accuracy"].idxmax()]
    right = {"best": best["model"], "beats_chance": bool(best["ci_low"] > 0.5)}
    assert ex.check_05_warmup(right, run)
    assert f"OK: {best['model']} leads" in _out(capsys)
    with pytest.raises(ExerciseError, match=r"you named 'silent'"):
        ex.check_05_warmup({**right, "best": "silent"}, run)
    with pytest.raises(ExerciseError, match=r"beats_chance should be"):
        ex.check_05_warmup({**right, "beats_chance": not right["beats_chance"]}, run)


def _per_pair(run: RunFolder) -> pd.Series:
    unseen = {p.pair_id for p in read_jsonl(run.path / "pairs" / "test.jsonl", Pair)}
    rows = [json.loads(line) for line in (run.path / "eval" / "predictions.jsonl").open()]
    df = pd.DataFrame(rows)
    return df[df["pair_id"].isin(unseen)].groupby(["model", "pair_id"])["correct"].mean()


def test_05_core_debiased_accuracy_from_the_predictions(run, capsys):
    right = _per_pair(run).groupby("model").mean().to_dict()
    assert right["always A"] == 0.5  # position-debiased: one right order per pair
    assert ex.check_05_core(right, run)
    assert "reproduce eval/overall.csv for all 3 models" in _out(capsys)
    with pytest.raises(ExerciseError, match=r"always A: expected 0.5000, got 1.0000"):
        ex.check_05_core({**right, "always A": 1.0}, run)
    with pytest.raises(ExerciseError, match=r"no model 'SFT'"):
        ex.check_05_core({**right, "SFT": 0.5}, run)
    with pytest.raises(ExerciseError, match=r"lacks the key"):
        ex.check_05_core({"random": right["random"]}, run)


def _percentile_bootstrap(scores, n_boot=1000, seed=0):
    rng = np.random.default_rng(seed + 1)  # another stream than bootstrap_ci's, on purpose
    scores = np.asarray(scores, dtype=float)
    means = scores[rng.integers(0, len(scores), size=(n_boot, len(scores)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def test_05_stretch_accepts_a_bootstrap_and_refuses_shortcuts(run, capsys):
    assert ex.check_05_stretch(_percentile_bootstrap, run)
    assert ex.check_05_stretch(lambda s, n, seed: bootstrap_ci(s, n, seed), run)
    assert _out(capsys).count("OK: ") == 2

    def normal(scores, n_boot=1000, seed=0):
        s = np.asarray(scores, dtype=float)
        half = 1.96 * s.std(ddof=1) / math.sqrt(len(s)) if len(s) > 1 else 0.0
        return s.mean() - half, s.mean() + half

    with pytest.raises(ExerciseError, match=r"leaves the range of the scores"):
        ex.check_05_stretch(normal, run)

    def unseeded(scores, n_boot=1000, seed=0):
        return _percentile_bootstrap(scores, n_boot, np.random.randint(0, 10**6))

    with pytest.raises(ExerciseError, match=r"same scores and seed gave two different"):
        ex.check_05_stretch(unseeded, run)
    with pytest.raises(ExerciseError, match=r"excludes the mean"):
        ex.check_05_stretch(
            lambda s, n, seed: (0.0, 0.1) if len(s) == 300 else bootstrap_ci(s, n, seed), run
        )


# ----------------------------------------------------------------------------------------------
# 06 · Best-of-N
# ----------------------------------------------------------------------------------------------


def test_06_warmup_counts_comparisons(run, capsys):
    assert ex.check_06_warmup(lambda t, n: t * n * (n - 1), run)
    assert "this run made 12 comparisons; the 24gb profile makes 1,440" in _out(capsys)
    with pytest.raises(ExerciseError, match=r"n_comparisons\(1, 2\) returned 1, expected 2"):
        ex.check_06_warmup(lambda t, n: t * n * (n - 1) // 2, run)


def test_06_core_repicks_by_style_distance(run, capsys):
    assert ex.check_06_core({"picks": {"bon-a": 1, "bon-b": 2}, "mean_style_distance": 1.0}, run)
    assert "mean style distance 1.00 (PersRM's picks: 3.50)" in _out(capsys)
    with pytest.raises(ExerciseError, match=r"bon-a: the closest draft is \[1\]"):
        ex.check_06_core({"picks": {"bon-a": 2, "bon-b": 2}, "mean_style_distance": 1.0}, run)
    with pytest.raises(ExerciseError, match=r"mean style distance of these picks is 1.0000"):
        ex.check_06_core({"picks": {"bon-a": 1, "bon-b": 2}, "mean_style_distance": 2.0}, run)
    with pytest.raises(ExerciseError, match=r"each of the 2 task ids"):
        ex.check_06_core({"picks": {"bon-a": 1}, "mean_style_distance": 1.0}, run)


def test_06_stretch_win_rates(capsys):
    def win_rates(n, letters):
        wins = [0.0] * n
        for (i, j), letter in zip(comparison_plan(n), letters, strict=True):
            wins[i] += letter == "A"
            wins[j] += letter == "B"
        return [w / (2 * (n - 1)) for w in wins]

    assert ex.check_06_stretch(win_rates)
    assert "always-'A' judge ties every draft" in _out(capsys)

    def none_is_a_win_for_b(n, letters):  # a classic: `else:` instead of `elif letter == "B":`
        return win_rates(n, ["A" if letter == "A" else "B" for letter in letters])

    with pytest.raises(ExerciseError, match=r"a None verdict is a win for nobody"):
        ex.check_06_stretch(none_is_a_win_for_b)


# ----------------------------------------------------------------------------------------------
# How solutions open the run, and how they are run
# ----------------------------------------------------------------------------------------------


def test_solution_run_only_reads_and_names_the_missing_stage(run, monkeypatch, capsys):
    monkeypatch.setenv("PERSRM_RUNS_DIR", str(run.path.parent))
    before = (run.path / "manifest.json").read_bytes()
    opened = ex.solution_run("01", "smoke", "ex")
    assert opened.path == run.path and "(read-only)" in _out(capsys)
    assert (run.path / "manifest.json").read_bytes() == before
    with pytest.raises(MissingInputsError, match=r"Run notebooks/05_evaluation.ipynb first"):
        ex.solution_run("05_evaluation", "smoke", "ex")


def test_every_series_notebook_has_its_exercises_and_solutions():
    names = [solutions_name(p.name) for p in series_notebooks()]
    assert names == [p.name for p in solutions_notebooks()]
    for path in series_notebooks():
        cells = nbformat.read(path, as_version=4).cells
        start = next(i for i, c in enumerate(cells) if c.source.startswith("## Exercises"))
        assert cells[-1].source.startswith("## Recap"), path.name
        assert "**Check yourself**" in cells[-1].source
        assert solutions_name(path.name) in cells[start].source
        code = [c.source for c in cells[start:-1] if c.cell_type == "code"]
        # the three tiers first, each a markdown cell then its check; knob exercises may follow
        assert start == len(cells) - 8 - 2 * (len(code) - 3), path.name
        for tier, source in zip(("warmup", "core", "stretch"), code[:3], strict=True):
            assert "answer = None  # your code here" in source
            assert f"check_{path.name[:2]}_{tier}(answer" in source
        for name in BY_HAND.get(path.name[:2], ()):  # after the tiers, answered by a function
            assert sum(f"answer = None  # your code here\n{name}(answer)" in c for c in code) == 1
    for path in solutions_notebooks():
        source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        assert "solution_run(" in source and "start_stage" not in source
        assert all(f"check_{path.name[:2]}_{t}(answer" in source
                   for t in ("warmup", "core", "stretch"))  # fmt: skip
        assert all(f"{name}(answer)" in source for name in BY_HAND.get(path.name[:2], ()))


def test_the_command_passes_solutions_to_the_runner(monkeypatch):
    seen: dict = {}
    monkeypatch.setattr("persrm_utils.cli.run_series", lambda **kw: seen.update(kw) or [])
    assert main(["run", "--run", "r1", "--solutions"]) == 0
    assert seen["solutions"] is True and seen["run_name"] == "r1"
    assert main(["run"]) == 0 and seen["solutions"] is False


def _stage_done_run(runs_root: Path) -> RunFolder:
    folder = RunFolder.create("sol", "smoke", root=runs_root)
    env = folder.file("environment.json")
    env.write_text("{}")
    _done(folder, "00_setup", [env])
    return folder


def test_the_runner_runs_solutions_without_touching_the_manifest(runs_root, monkeypatch):
    from persrm_utils.run import runner

    folder = _stage_done_run(runs_root)
    before = (folder.path / "manifest.json").read_bytes()
    calls: list = []

    def fake_execute(notebook, output, parameters, *args):
        calls.append((notebook, parameters))
        output.write_text("{}")

    monkeypatch.setattr(runner, "_execute", fake_execute)
    results = runner.run_series("smoke", run_name="sol", only=["00"], solutions=True,
                                progress=False, echo=lambda s: None)  # fmt: skip
    assert [(r.stage, r.status) for r in results] == [
        ("00_setup", "skipped"), ("00_setup_solutions", "done")]  # fmt: skip
    assert calls == [("00_setup_solutions.ipynb",
                      {"PROFILE": "smoke", "RUN_NAME": "sol", "OVERRIDES": {}})]  # fmt: skip
    assert results[1].output == folder.path / "notebooks" / "solutions" / "00_setup_solutions.ipynb"
    assert (folder.path / "manifest.json").read_bytes() == before


def test_a_failing_solution_stops_the_run_but_marks_no_stage_failed(runs_root, monkeypatch):
    from papermill.exceptions import PapermillExecutionError

    from persrm_utils.run import runner

    folder = _stage_done_run(runs_root)
    before = (folder.path / "manifest.json").read_bytes()

    def failing(notebook, output, *args):
        raise PapermillExecutionError(7, 3, "check_00_core(answer, run)", "ExerciseError",
                                      "Expected the SHA-256 ...", [])  # fmt: skip

    monkeypatch.setattr(runner, "_execute", failing)
    lines: list[str] = []
    with pytest.raises(runner.StageFailed) as err:
        runner.run_series("smoke", run_name="sol", only=["00"], solutions=True,
                          progress=False, echo=lines.append)  # fmt: skip
    msg = str(err.value)
    assert "Solutions notebook 00_setup_solutions.ipynb failed in cell 7" in msg
    assert "ExerciseError" in msg and "check_00_core(answer, run)" in msg
    assert "--only 00_setup --solutions" in msg and "manifest is unchanged" in msg
    assert any("00_setup_solutions" in line and "failed" in line for line in lines)
    assert (folder.path / "manifest.json").read_bytes() == before
