"""Profiles: typed, validated, overridable by name, with errors that say what to type instead."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from persrm_utils.errors import ConfigError
from persrm_utils.profiles import PROFILE_NAMES, get_profile, parse_overrides


def test_all_profiles_exist_and_validate():
    assert PROFILE_NAMES == ("smoke", "cpu", "cpu-long", "t4", "24gb")
    for name in PROFILE_NAMES:
        profile = get_profile(name)
        assert profile.name == name
        assert 1 <= profile.max_exemplars <= 3
        assert profile.max_completion_length < profile.max_seq_length


def test_model_per_profile_matches_the_design():
    assert get_profile("smoke").model_source == "tiny"
    assert get_profile("cpu").model_source == "smollm2"
    assert get_profile("cpu-long").model_source == "smollm2"
    assert get_profile("t4").model_name == "Qwen/Qwen2.5-1.5B-Instruct"
    assert get_profile("24gb").model_name == "Qwen/Qwen2.5-7B-Instruct"
    assert get_profile("t4").load_in_4bit and get_profile("24gb").load_in_4bit
    assert not get_profile("smoke").load_in_4bit


def test_override_changes_one_field_and_keeps_the_rest():
    base = get_profile("cpu")
    changed = get_profile("cpu", sft_max_steps=3, model_name="x/y")
    assert changed.sft_max_steps == 3 and changed.model_name == "x/y"
    assert changed.lora_r == base.lora_r
    assert base.override(lora_r=2).lora_r == 2


def test_profiles_are_frozen():
    """A notebook must not change a setting half-way: the manifest would describe another run."""
    profile = get_profile("smoke")
    with pytest.raises(ValidationError):
        profile.lora_r = 99


def test_profile_names_are_case_and_space_insensitive():
    assert get_profile(" T4 ").name == "t4"


def test_unknown_profile_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        get_profile("smok")
    msg = str(err.value)
    assert "Unknown profile 'smok'" in msg and "Did you mean 'smoke'" in msg
    assert "smoke, cpu, cpu-long, t4, 24gb" in msg


def test_unknown_field_is_an_error_not_ignored():
    with pytest.raises(ConfigError) as err:
        get_profile("cpu", lora_rank=8)
    assert "no field 'lora_rank'" in str(err.value)
    assert "'lora_r'" in str(err.value)


def test_renaming_the_profile_through_an_override_is_refused():
    """'name' is a field, but not one to override: the message says so, and never answers
    "no field 'name'. Did you mean 'name'?" (it did before)."""
    with pytest.raises(ConfigError) as err:
        get_profile("cpu", name="t4")
    msg = str(err.value)
    assert "'name' cannot be overridden: it is the profile's own name ('cpu')" in msg
    assert "--profile NAME" in msg and "--run NAME" in msg
    assert "Did you mean" not in msg and "no field" not in msg


def test_a_suggestion_is_never_the_name_given_nor_name():
    with pytest.raises(ConfigError) as err:
        get_profile("cpu", nme="x")
    msg = str(err.value)
    assert "no field 'nme'" in msg and "'name'" not in msg


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("sft_max_steps", True, "a whole number."),
        ("sft_learning_rate", True, "a number."),
        ("lora_dropout", False, "a number."),
        ("eval_max_pairs", True, "a whole number or None."),
        ("sft_epochs", True, "a number or None."),
    ],
)
def test_a_boolean_for_a_numeric_field_is_refused(field, value, kind):
    """pydantic reads True as 1 and 1.0: `--set sft_max_steps=true` trained one step."""
    with pytest.raises(ConfigError) as err:
        get_profile("smoke", **{field: value})
    msg = str(err.value)
    assert f"field '{field}' = {value!r} is a boolean, but '{field}' takes {kind}" in msg
    assert f"--set {field}=" in msg and "this profile's default is" in msg
    with pytest.raises(ConfigError, match="is a boolean"):
        get_profile("smoke").override(**{field: value})
    with pytest.raises(ConfigError, match="is a boolean"):
        get_profile("smoke", **parse_overrides([f"{field}={str(value).lower()}"]))


def test_booleans_stay_valid_for_boolean_fields_and_numbers_for_numeric_ones():
    prof = get_profile("smoke", load_in_4bit=False, answer_prefill=False, sft_max_steps=3,
                       sft_learning_rate=1, eval_max_pairs=None)  # fmt: skip
    assert (prof.load_in_4bit, prof.answer_prefill) == (False, False)
    assert (prof.sft_max_steps, prof.sft_learning_rate, prof.eval_max_pairs) == (3, 1.0, None)


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("lora_r", -1, "greater than 0"),
        ("lora_r", "abc", "valid integer"),
        ("corpus", "wiki", "'seed', 'c50' or 'file'"),
        ("max_exemplars", 4, "less than or equal to 3"),
        ("grpo_num_generations", 1, "greater than or equal to 2"),
    ],
)
def test_bad_values_name_the_field_the_value_and_the_default(field, value, expect):
    with pytest.raises(ConfigError) as err:
        get_profile("t4", **{field: value})
    msg = str(err.value)
    assert f"field '{field}'" in msg and repr(value) in msg and expect in msg
    assert "the default for this profile is" in msg


def test_a_bad_item_of_a_tuple_field_names_the_field_the_item_and_the_allowed_values():
    """A bad negative type once escaped as a bare KeyError: 'sft_negative_types.0' (pydantic
    locates an item's error as (field, index), and the message looked the dotted path up as a
    field), so a learner typing `--set 'sft_negative_types=["nope"]'` got a traceback."""
    with pytest.raises(ConfigError) as err:
        get_profile("smoke", sft_negative_types=("style_random", "nope"))
    msg = str(err.value)
    assert "field 'sft_negative_types' = ('style_random', 'nope')" in msg
    assert "item 1:" in msg and "'cross_author'" in msg
    assert "the default for this profile is" in msg


def test_parse_overrides_reads_json_values_and_plain_strings():
    got = parse_overrides(["sft_max_steps=10", "load_in_4bit=true", "model_name=Qwen/Qwen2.5-0.5B"])
    assert got == {"sft_max_steps": 10, "load_in_4bit": True, "model_name": "Qwen/Qwen2.5-0.5B"}
    with pytest.raises(ConfigError, match="field=value"):
        parse_overrides(["sft_max_steps"])


def _trl_accepts(tmp_path, batch: int, accum: int, group: int) -> bool:
    from trl import GRPOConfig

    try:
        GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none",
                   per_device_train_batch_size=batch, gradient_accumulation_steps=accum,
                   num_generations=group)  # fmt: skip
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("group", [2, 3, 4, 8])
@pytest.mark.parametrize("accum", [1, 2, 4])
@pytest.mark.parametrize("batch", [1, 2, 3, 4, 8])
def test_grpo_group_rule_accepts_exactly_what_trl_accepts(batch, accum, group, tmp_path):
    """TRL raises "generation_batch_size (8) must be divisible by num_generations (3)" only when
    GRPOConfig is built, after the model has loaded; the profile refuses the same combinations
    up front (one process), and no others."""
    try:
        get_profile("smoke", grpo_batch_size=batch, grpo_grad_accum=accum,
                    grpo_num_generations=group)  # fmt: skip
        ours = True
    except ConfigError:
        ours = False
    assert ours == _trl_accepts(tmp_path, batch, accum, group)


def test_a_bad_group_size_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"= 8 .*valid grpo_num_generations for it: 2, 4, 8"):
        get_profile("t4", grpo_num_generations=3)
    with pytest.raises(ConfigError, match="no group size fits"):
        get_profile("smoke", grpo_batch_size=1, grpo_num_generations=2)
    assert get_profile("t4", grpo_batch_size=4, grpo_grad_accum=2).grpo_num_generations == 4
