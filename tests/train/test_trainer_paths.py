"""What every trainer the series builds shares, checked through the project's own entry points:
trainable weights stay float32, unsloth is imported before trl, and every default Unsloth
changes is set explicitly."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
import trl

import persrm_utils.models.loader as loader
from persrm_utils.evaluate.baselines import bt_config_values
from persrm_utils.models.loader import load_model
from persrm_utils.profiles import get_profile
from persrm_utils.train.grpo import grpo_config, grpo_config_values, load_policy, train_grpo
from persrm_utils.train.rewards import completion_text
from persrm_utils.train.sft import sft_config, sft_config_values, train_sft
from persrm_utils.train.trainer import UNSLOTH_CHANGED_DEFAULTS, keep_trainable_fp32

SFT_ROWS = [
    {"messages": [
        {"role": "system", "content": "You judge."},
        {"role": "user", "content": f"Pair {i}: which response, A or B?"},
        {"role": "assistant", "content": "<think> short </think>\n<answer>[[A]]</answer>"},
    ]}
    for i in range(4)
]  # fmt: skip
GRPO_ROWS = [
    {"prompt": [{"role": "user", "content": f"Pair {i}: A or B?"}], "label": "A"} for i in range(4)
]


def _length_reward(completions, **kwargs):
    return [len(completion_text(c)) / 100 for c in completions]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))


def _trainable_dtypes(model) -> set[torch.dtype]:
    return {p.dtype for p in model.parameters() if p.requires_grad}


# --- 1. TRL's bf16 cast of a quantized model's adapters ----------------------------------------


def test_trl_casts_a_4bit_models_adapters_to_bf16_and_keep_trainable_fp32_undoes_it(tmp_path):
    """TRL 1.14.2 casts LoRA weights to bf16 when ``is_loaded_in_4bit`` is set; with fp16 the
    GradScaler then fails: "_amp_foreach_non_finite_check_and_unscale_cuda" not implemented for
    'BFloat16'. This pins TRL's behaviour (a TRL change shows up here) and the helper's undo."""
    profile = get_profile("smoke", sft_max_steps=1)
    loaded = load_policy(profile, None)
    loaded.model.is_loaded_in_4bit = True  # the one attribute TRL reads
    trainer = trl.SFTTrainer(
        model=loaded.model,
        args=sft_config(profile, tmp_path, cuda=False),
        train_dataset=__import__("datasets").Dataset.from_list(SFT_ROWS),
        processing_class=loaded.tokenizer,
    )
    assert torch.bfloat16 in _trainable_dtypes(trainer.model), "TRL no longer casts: revisit"
    assert keep_trainable_fp32(trainer.model) > 0
    assert _trainable_dtypes(trainer.model) == {torch.float32}
    assert trainer.optimizer is None, "the optimizer must not exist yet, or it holds bf16 copies"


def test_train_sft_keeps_a_4bit_models_adapters_in_float32(tmp_path):
    """Without the cast back, the adapters of a 4-bit model train (and are saved) in bf16, and
    a T4's fp16 GradScaler fails on them ("not implemented for 'BFloat16'")."""
    profile = get_profile("smoke", sft_max_steps=1)
    loaded = load_model(profile)
    loaded.model.is_loaded_in_4bit = True
    train_sft(profile, SFT_ROWS, tmp_path / "sft", loaded=loaded, resume=False)
    assert _trainable_dtypes(loaded.model) == {torch.float32}


def test_train_grpo_keeps_a_4bit_models_adapters_in_float32(tmp_path):
    """The same cast happens in GRPOTrainer (trl 1.14.2 grpo_trainer.py:520)."""
    profile = get_profile("smoke", grpo_max_steps=1, max_completion_length=4)
    policy = load_policy(profile, None)
    policy.model.is_loaded_in_4bit = True
    train_grpo(profile, GRPO_ROWS, tmp_path / "grpo", (_length_reward,), loaded=policy,
               resume=False)  # fmt: skip
    assert _trainable_dtypes(policy.model) == {torch.float32}


# --- 2. unsloth before trl ---------------------------------------------------------------------

STUB = '''
"""A stand-in for unsloth: like the real one, importing it rebinds trl's trainers and configs."""
import trl

BUILT = []

def _recording(base):
    class Patched(base):
        def __init__(self, *args, **kwargs):
            BUILT.append((base.__name__, type(kwargs.get("args")).__module__))
            super().__init__(*args, **kwargs)
    Patched.__name__ = Patched.__qualname__ = "Unsloth" + base.__name__
    return Patched

for _name in ("SFTTrainer", "GRPOTrainer", "RewardTrainer"):
    globals()["Unsloth" + _name] = _recording(getattr(trl, _name))
    setattr(trl, _name, globals()["Unsloth" + _name])
# module attributes, because checkpoints pickle the config
for _name in ("SFTConfig", "GRPOConfig", "RewardConfig"):
    globals()["Unsloth" + _name] = type("Unsloth" + _name, (getattr(trl, _name),), {})
    setattr(trl, _name, globals()["Unsloth" + _name])
'''


@pytest.fixture
def smoke_loaded():
    """The tiny model, loaded before the backend choice is forced (its loader is not at stake)."""
    return load_model(get_profile("smoke"))


@pytest.fixture
def smoke_policy():
    return load_policy(get_profile("smoke"), None)


@pytest.fixture
def stub_unsloth(tmp_path, monkeypatch):
    """A fake ``unsloth`` on sys.path, and the unsloth backend chosen as on a CUDA machine."""
    (tmp_path / "stub" / "unsloth").mkdir(parents=True)
    (tmp_path / "stub" / "unsloth" / "__init__.py").write_text(textwrap.dedent(STUB))
    monkeypatch.syspath_prepend(str(tmp_path / "stub"))
    for name in ("SFTTrainer", "GRPOTrainer", "RewardTrainer", "SFTConfig", "GRPOConfig",
                 "RewardConfig"):  # fmt: skip
        monkeypatch.setattr(trl, name, getattr(trl, name))  # restored after the test
    monkeypatch.setattr(loader, "choose_backend", lambda profile, hw: ("unsloth", "forced"))
    yield
    sys.modules.pop("unsloth", None)


def test_train_sft_imports_unsloth_before_it_looks_up_trls_trainer(
    smoke_loaded, stub_unsloth, tmp_path
):
    """Unsloth patches trl at ``import unsloth``; a trainer looked up before that import stays
    TRL's own, and unsloth warns "Unsloth should be imported before [trl, transformers, peft]".
    The trainer and its config must both be the patched classes."""
    profile = get_profile("smoke", sft_max_steps=1)
    assert "unsloth" not in sys.modules
    train_sft(profile, SFT_ROWS, tmp_path / "sft", loaded=smoke_loaded, resume=False)
    built = sys.modules["unsloth"].BUILT
    assert built == [("SFTTrainer", "unsloth")], "TRL's own SFTTrainer (or SFTConfig) was used"


def test_train_grpo_imports_unsloth_before_it_looks_up_trls_trainer(
    smoke_policy, stub_unsloth, tmp_path
):
    """As for SFT: a ``GRPOConfig`` built before ``import unsloth`` is TRL's plain config."""
    profile = get_profile("smoke", grpo_max_steps=1, max_completion_length=4)
    train_grpo(profile, GRPO_ROWS, tmp_path / "grpo", (_length_reward,), loaded=smoke_policy,
               resume=False)  # fmt: skip
    assert sys.modules["unsloth"].BUILT == [("GRPOTrainer", "unsloth")]


def test_stage_commands_import_unsloth_when_the_profile_uses_it(stub_unsloth, runs_root):
    """``persrm sft/grpo`` reach trl only through begin_stage's profile: it imports unsloth."""
    from persrm_utils.errors import MissingInputsError
    from persrm_utils.train.commands import begin_stage

    with pytest.raises(MissingInputsError):  # an empty run folder: stage 02 has not run
        begin_stage("03_sft_qlora", "smoke", "r", None, force=True)
    assert "unsloth" in sys.modules


def test_no_module_of_the_package_imports_trl_at_module_level():
    """A top-level ``import trl`` anywhere would bind TRL's classes before unsloth can patch."""
    import ast

    import persrm_utils

    root = Path(persrm_utils.__file__).parent
    bad = []
    for path in root.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("trl", "unsloth")]
    assert not bad


# --- 3. the defaults Unsloth changes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        ("sft", lambda p, d: sft_config_values(p, d, cuda=False)),
        ("grpo", lambda p, d: grpo_config_values(p, d, cuda=False)),
        ("reward", lambda p, d: bt_config_values(p, d, 2, 64, cuda=False)),
    ],
)
def test_every_default_unsloth_changes_is_set_explicitly(kind, values, tmp_path):
    """Unsloth's configs change unset defaults (gradient accumulation 1 -> 2, weight decay
    0 -> 0.001, warmup 0 -> 0.1, epsilon_high 0.2 -> 0.28 with loss_type="dapo", ...): an
    unset field would make the Unsloth path train another recipe than the plain one."""
    args = values(get_profile("t4"), tmp_path)
    missing = [f for f in UNSLOTH_CHANGED_DEFAULTS["all"] + UNSLOTH_CHANGED_DEFAULTS[kind]
               if f not in args]  # fmt: skip
    assert not missing


def test_built_configs_carry_the_explicit_values(tmp_path):
    profile = get_profile("t4")
    grpo = grpo_config(profile, tmp_path, cuda=False)
    assert grpo.gradient_accumulation_steps == profile.grpo_grad_accum == 1  # Unsloth: 2
    assert grpo.weight_decay == 0.0 and grpo.warmup_steps == 0  # Unsloth: 0.001, 0.1
    assert grpo.epsilon == grpo.epsilon_high == 0.2  # Unsloth: 0.28 with loss_type="dapo"
    assert grpo.mask_truncated_completions is False and grpo.logging_nan_inf_filter is False
    sft = sft_config(profile, tmp_path, cuda=False)
    assert sft.weight_decay == 0.0 and sft.padding_free is False
    assert sft.loss_type == "chunked_nll"  # TRL's memory-saving form of the same NLL
    assert sft_config(profile, tmp_path, cuda=False, backend="unsloth").loss_type == "nll"
