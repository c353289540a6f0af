"""Statements a review found untrue or unmeasured must not come back.

Each entry is a phrase that once stood in a notebook, the package or the docs and claimed what no
run showed (or what a run contradicted). The scan reads notebook cells through nbformat and folds
whitespace, so a phrase re-wrapped across lines or cells' JSON escaping cannot hide it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from persrm_utils.paths import project_root
from persrm_utils.profiles import get_profile

#: phrase -> why it is wrong
RETIRED: dict[str, str] = {
    "SmolLM2 writes them and SmolLM2 is then trained": "cpu uses the offline writers",
    "and GPU profiles use an LLM for style_mimic": "cpu uses the offline writers",
    "adapts to any user from their exemplars alone": "run cpu-b barely uses the exemplar",
    "barely depends on the rank": "rsLoRA: alpha/r shrinks the update as r grows",
    "without retuning the learning rate": "rsLoRA: alpha/r shrinks the update as r grows",
    "Expect a low format-validity rate": "on cpu the harness writes the tags",
    "is memorising, not learning": "cpu-b's loss is ~0 and it generalizes",
    "If the accuracy after SFT is still near 50%, why is that expected": "SFT did the work",
    "teaches it to answer *right*": "GRPO moved cpu-b by +0.009, inside the noise",
    "clipped ratio means the judge is rambling": "truncation is not PPO clipping",
    "the comparison PersRM-R1 argues against": "the Bradley-Terry RM beat the judge in cpu-b",
    "`cross_author` in between": "cross_author was the worst type in cpu-b",
    "picks the draft that sounds most like them": "the judge learned to spot machine text",
    "runs the paper's two-stage recipe": "no GPU profile was ever run",
    "no length bias": "dapo: longer completions carry more total weight",
    "make it fit with room to spare": "no GPU run measured it",
    "which is what makes the `t4` profile fit": "no GPU run measured it",
    "are what make GRPO fit": "no GPU run measured it",
    "that is what makes a T4 enough": "no GPU run measured it",
    "That is the whole reason this series can run on one consumer GPU": "no GPU run measured it",
}


def _fold(text: str) -> str:
    return " ".join(text.split())


def _documents(root: Path) -> dict[str, str]:
    """Every text a reader meets: notebooks (cell sources), the package, the docs."""
    docs: dict[str, str] = {}
    for nb_path in sorted((root / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        docs[str(nb_path.relative_to(root))] = "\n".join(c.source for c in nb.cells)
    for pattern in ("src/**/*.py", "docs/*.md", "*.md"):
        for path in sorted(root.glob(pattern)):
            docs[str(path.relative_to(root))] = path.read_text(encoding="utf-8")
    return {name: _fold(text) for name, text in docs.items()}


def find_retired(docs: dict[str, str]) -> list[str]:
    return [
        f"{name}: {phrase!r} ({why})"
        for name, text in docs.items()
        for phrase, why in RETIRED.items()
        if _fold(phrase) in text
    ]


def test_no_retired_statement_remains():
    assert find_retired(_documents(project_root())) == []


def test_the_scan_finds_a_statement_that_comes_back():
    doc = {"x.md": _fold("A rising clipped ratio\nmeans the judge is rambling.")}
    assert find_retired(doc) == [
        "x.md: 'clipped ratio means the judge is rambling' (truncation is not PPO clipping)"
    ]
    assert find_retired(doc | {"x.md": "nothing wrong here"}) == []


def test_gpu_profiles_say_they_were_never_run():
    for name in ("t4", "24gb"):
        assert "not yet measured" in get_profile(name).description


def _cell_text(notebook: str) -> str:
    nb = nbformat.read(project_root() / "notebooks" / notebook, as_version=4)
    return _fold("\n".join(c.source for c in nb.cells))


def test_02_says_what_the_offline_negatives_are_and_the_ngram_figure_agrees():
    text = _cell_text("02_synthetic_pairs.ipynb")
    assert "three template voices" in text and "word-bigram Markov chain" in text
    assert "scores 0.00 on `style_mimic`" in text
    record = json.loads((project_root() / "docs/results/cpu/results.json").read_text())
    ngram = record["eval"]["by_type"]["stylometric (char n-grams)"]["style_mimic"]
    assert f"{ngram['accuracy']:.2f}" == "0.00"


def test_03_names_rslora():
    assert "use_rslora=True" in _cell_text("03_sft_qlora.ipynb")


def _trl_logged_names() -> set[str]:
    import trl.trainer.grpo_trainer as grpo

    source = Path(grpo.__file__).read_text(encoding="utf-8")
    return set(re.findall(r'_metrics\[mode\]\[f?"([^"]+)"\]', source))


@pytest.mark.parametrize(
    "name",
    [
        "reward",
        "reward_std",
        "frac_reward_zero_std",
        "completions/mean_length",
        "completions/clipped_ratio",
        "completions/mean_terminated_length",
        "clip_ratio/low_mean",
        "clip_ratio/high_mean",
        "clip_ratio/region_mean",
        "entropy",
        "kl",
    ],
)
def test_04_glossary_names_what_trl_logs(name: str):
    """The glossary in 04 and the plot use TRL 1.14's own metric names, not guesses."""
    from persrm_utils.classroom.plots import GRPO_PANELS

    assert name in _trl_logged_names()
    assert f"`{name}`" in _cell_text("04_grpo_unsloth.ipynb") or name in (
        "reward",
        "reward_std",
    )
    assert set(GRPO_PANELS) <= _trl_logged_names()


def test_03_gives_a_stronger_teacher_the_sft_pairs_and_its_own_budget():
    text = _cell_text("03_sft_qlora.ipynb")
    assert "STRONGER_TEACHER, sft_train, by_id, profile, session.path" in text
    assert "teacher_requests(sft_train, by_id, profile.max_completion_length)" not in text
    assert "teacher_max_new_tokens(profile.max_completion_length)" in text
