"""Hand the trained judge to someone else: merge the adapter, save a standalone model folder.

    persrm export --run smoke --out exported/smoke-judge

writes a folder that plain ``transformers`` loads without this package, peft or the run folder:
the base weights with the LoRA adapter merged in (``merge_and_unload``), the tokenizer with the
chat template the judge was trained with, ``persrm.json`` (the few settings the judge needs
besides its weights) and ``README.md``, a model card that states the training data, the profile
and the accuracy measured in the run's evaluation, read from its files (``eval/metrics.json``):
"not measured" when the run has none. Nothing in the card is typed by hand.

A 4-bit (QLoRA) run is merged into the base model in 16/32-bit: LoRA weights cannot be merged
into 4-bit weights without losing precision, so the export is larger than the training footprint.

Pushing the folder to the Hugging Face Hub needs a token and a network (``huggingface-cli
login``, then ``HfApi().upload_folder(folder_path=..., repo_id="you/name")``); see the card.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from persrm_utils.errors import DataError
from persrm_utils.judge.format import SYSTEM_PROMPT
from persrm_utils.records import Exemplar, read_jsonl
from persrm_utils.run.folders import RunFolder
from persrm_utils.train.sft import load_with_adapter
from persrm_utils.use.persrm import (
    EXPORT_INFO,
    check_writable,
    find_adapter,
    resolve_run,
    run_profile,
)

#: The model name the evaluation gives each adapter (notebook 05,
#: ``persrm_utils.evaluate.held_out``).
EVAL_NAME = {"grpo": "SFT + GRPO", "sft": "SFT"}
NOT_MEASURED = "not measured"


def _eval_rows(run_path: Path) -> list[dict[str, Any]] | None:
    """The rows of ``eval/metrics.json`` (one per model), or None when the run has none."""
    path = run_path / "eval" / "metrics.json"
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(
            f"is not valid JSON ({exc.msg}, line {exc.lineno})",
            "run notebook 05 again to rewrite it, or delete it (the card then says "
            "'not measured').",
            path=str(path),
        ) from None
    return rows if isinstance(rows, list) else None


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _data_summary(run_path: Path) -> list[str]:
    """Authors and texts per split, from the run's exemplars.jsonl; the corpus from the manifest."""

    lines = []
    record = RunFolder.open(run_path).manifest.stages.get("01_exemplars")
    corpus = (record.inputs.get("corpus") if record else None) or {}
    if corpus:
        lines.append(f"- Corpus: `{corpus.get('corpus')}`, read from `{corpus.get('path')}` "
                     f"(SHA-256 `{corpus.get('sha256')}`)")  # fmt: skip
    path = run_path / "exemplars.jsonl"
    if path.is_file():
        exemplars = read_jsonl(path, Exemplar)
        texts = Counter(str(e.meta.get("split")) for e in exemplars)
        authors: dict[str, set[str]] = {}
        for e in exemplars:
            authors.setdefault(str(e.meta.get("split")), set()).add(e.author_id)
        parts = [f"{s}: {len(authors[s])} authors, {texts[s]} texts" for s in sorted(texts)]
        lines.append("- Exemplars (`exemplars.jsonl`): " + "; ".join(parts))
    pair_counts = []
    for split in ("train", "val", "test", "seen_test"):
        f = run_path / "pairs" / f"{split}.jsonl"
        if f.is_file():
            pair_counts.append(f"{split} {sum(1 for line in f.open() if line.strip())}")
    if pair_counts:
        lines.append("- Preference pairs: " + ", ".join(pair_counts))
    return lines or [f"- {NOT_MEASURED}: the run folder holds no exemplars.jsonl"]


def model_card(run_path: Path, adapter: str, profile: Any, base: str) -> str:
    """The README.md of an export: data, profile, measured accuracy (from the eval files only)."""
    rows = _eval_rows(run_path)
    name = EVAL_NAME[adapter]
    mine = [r for r in rows or [] if r.get("model") == name]
    if mine:
        r = mine[0]
        headline = (f"accuracy {_fmt(r.get('accuracy'))} (95% CI {_fmt(r.get('ci_low'))} to "
                    f"{_fmt(r.get('ci_high'))}) on {r.get('n_pairs', '?')} pairs of unseen test "
                    "authors, position-debiased (each pair judged in both orders)")  # fmt: skip
    else:
        headline = f"{NOT_MEASURED} (the run's eval/metrics.json has no row for '{name}')"
        if rows is None:
            headline = f"{NOT_MEASURED} (the run has no eval/metrics.json: notebook 05 was not run)"
    table = []
    if rows:
        cols = [c for c in ("model", "n_pairs", "accuracy", "ci_low", "ci_high") if c in rows[0]]
        table = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
        table += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    info_file = run_path / "eval" / "info.json"
    eval_info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    lines = [
        "---",
        "library_name: transformers",
        "tags: [persrm, reward-model, personalization, lora-merged]",
        "---",
        "",
        f"# PersRM judge from run `{run_path.name}`",
        "",
        "A personalized reasoning reward model (after PersRM-R1, arXiv 2508.14076): given one to "
        f"{profile.max_exemplars} texts a person wrote, a prompt and two responses, it reasons in "
        "`<think>` and answers `<answer>[[A]]</answer>` or `<answer>[[B]]</answer>` for the "
        "response that person wrote or would prefer.",
        "",
        "## What it is",
        "",
        f"- Base model: `{base}` with the run's **{adapter.upper()}** LoRA adapter merged in",
        f"- Profile: `{profile.name}` (LoRA r={profile.lora_r}, SFT {profile.sft_max_steps} "
        f"steps, GRPO {profile.grpo_max_steps} steps, up to {profile.max_exemplars} exemplars, "
        f"{profile.max_completion_length} new tokens)",
        "",
        "## Training data",
        "",
        *_data_summary(run_path),
        "",
        "## Measured accuracy",
        "",
        f"- This model ({name}): {headline}.",
        f"- Evaluation data: {eval_info.get('data', NOT_MEASURED)}",
        "",
        *(
            ["All models of the run's evaluation (`eval/metrics.json`):", "", *table, ""]
            if table
            else []
        ),
        "## Use",
        "",
        "```python",
        "from persrm_utils.use.persrm import PersRM",
        "",
        'judge = PersRM.from_pretrained("path/to/this/folder")',
        'r = judge.compare(["a text the user wrote ...", "another ..."], "the prompt", a, b)',
        "print(r.verdict, r.agreement, r.reasoning)",
        "```",
        "",
        *(
            [
                "This judge is verdict-only: it was trained to write one token, the letter, after "
                f"the assistant turn has been started with `{profile.answer_prefix!r}` "
                "(`answer_prefix` in `persrm.json`). `PersRM` does that for you; with "
                "plain `generate`, append that text to the chat-templated prompt.",
                "",
            ]
            if profile.answer_prefix
            else []
        ),
        "Without this package: load it with `AutoModelForCausalLM.from_pretrained` and "
        "`AutoTokenizer.from_pretrained`, build the chat with the system prompt in "
        f"`{EXPORT_INFO}` and the layout of `persrm_utils.judge.format.compare_messages`; decode "
        "greedily.",
        "",
        "## Push to the Hugging Face Hub",
        "",
        "Needs a token with write access and a network (not done by the export):",
        "",
        "```bash",
        "huggingface-cli login",
        'python -c "from huggingface_hub import HfApi; '
        "HfApi().create_repo('you/persrm-judge', exist_ok=True); "
        "HfApi().upload_folder(folder_path='.', repo_id='you/persrm-judge')\"",
        "```",
        "",
        "Check the training data's licence before publishing a model trained on it.",
        "",
    ]
    return "\n".join(lines)


def export_run(
    run: str | Path, out_dir: str | Path, adapter: str = "auto", force: bool = False
) -> Path:
    """Merge the run's adapter into its base model and save a standalone folder at ``out_dir``."""

    run_path = resolve_run(run)
    which, folder = find_adapter(run_path, adapter)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError("is a file, not a folder", "choose a folder for --out.", path=str(out))
    if out.exists() and any(out.iterdir()):
        if not force:
            raise DataError(
                "the export folder exists and is not empty",
                "choose another --out folder, or pass --force to replace it.",
                path=str(out),
            )
        if not (out / EXPORT_INFO).is_file():
            raise DataError(
                "--force would replace this folder, but it was not written by persrm export",
                "choose an empty or new --out folder.",
                path=str(out),
            )
    # Before the model is loaded and merged: the partial folder goes beside out, and out itself
    # is emptied when replaced.
    check_writable(out, "--out", folder=True)
    profile = run_profile(run_path)
    # Merge into full-precision weights through plain transformers (see the module docstring).
    merge_profile = profile.override(load_in_4bit=False, backend="transformers")
    loaded = load_with_adapter(merge_profile, folder)
    merged = loaded.model.merge_and_unload()
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    loaded.tokenizer.save_pretrained(str(tmp))
    base = loaded.source.split(" + ")[0]
    tiny = profile.model_source == "tiny"
    base_name = f"tiny random model ({Path(base).name})" if tiny else profile.model_name
    info = {
        "run": run_path.name,
        "adapter": which,
        "profile": profile.name,
        "base_model": base_name,
        "max_new_tokens": profile.max_completion_length,
        "max_exemplars": profile.max_exemplars,
        "answer_prefix": profile.answer_prefix,
        "system_prompt": SYSTEM_PROMPT,
    }
    (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2))
    (tmp / "README.md").write_text(model_card(run_path, which, profile, base_name))
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out
