"""Requests, keys and the two in-process backends (tiny transformers model, offline)."""

from __future__ import annotations

import random
from typing import ClassVar

import pytest
from openai_stub_server import load_varied_tiny

from persrm_utils.errors import ConfigError, ModelUnavailableError
from persrm_utils.generation.local import TransformersBackend
from persrm_utils.generation.openai_compat import OpenAIBackend
from persrm_utils.generation.requests import (
    Backend,
    GenRequest,
    OfflineBackend,
    scramble_last_user_message,
)

SENTENCE = (
    "The market opened higher on Monday and traders said shares rose percent by noon "
    "while analysts called the cuts expected"
)
WORDS = SENTENCE.split(" ")


def chat(text: str, system: str | None = "You are a helpful writer.") -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    return [*msgs, {"role": "user", "content": text}]


def varied_requests(n: int, seed: int = 0) -> list[GenRequest]:
    """Prompts of different lengths (so padding matters) and different length limits."""
    rng = random.Random(seed)
    return [
        GenRequest(
            chat(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 18)))),
            max_new_tokens=rng.randint(3, 12),
            meta={"i": i},
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_varied_tiny(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def backend(tiny):
    model, tokenizer = tiny
    return TransformersBackend(model, tokenizer, batch_size=4)


# ---------------------------------------------------------------------------- requests and keys


def test_key_is_stable_across_processes_and_versions():
    # A golden value: if this changes, every existing cache silently stops matching.
    req = GenRequest(chat("hello"), max_new_tokens=8)
    assert req.key == "4c982b7643d57efa9e56fd3bcf644d68915723d1e51678a8fa465760637c3802"
    assert len(req.key) == 64


def test_key_is_sensitive_to_every_field_but_meta():
    base = GenRequest(chat("hello"), max_new_tokens=8, temperature=0.7, seed=1, meta={"a": 1})
    variants = [
        GenRequest(chat("hello!"), 8, 0.7, 1),
        GenRequest(chat("hello", system="Another system prompt."), 8, 0.7, 1),
        GenRequest([{"role": "assistant", "content": "hello"}], 8, 0.7, 1),
        GenRequest(chat("hello"), 9, 0.7, 1),
        GenRequest(chat("hello"), 8, 0.8, 1),
        GenRequest(chat("hello"), 8, 0.7, 2),
    ]
    keys = {v.key for v in variants}
    assert len(keys) == len(variants) and base.key not in keys
    same = GenRequest(chat("hello"), 8, 0.7, 1, meta={"pair": "other", "negative": "x"})
    assert same.key == base.key and same == base and hash(same) == hash(base)


def test_key_ignores_dict_order_and_int_float_and_later_mutation():
    msgs = [{"role": "user", "content": "hi"}]
    a = GenRequest(msgs, 4, temperature=0)
    b = GenRequest([{"content": "hi", "role": "user"}], 4, temperature=0.0)
    assert a.key == b.key
    msgs[0]["content"] = "changed after the fact"
    assert a.key == b.key  # the request copied its messages


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(messages=[], max_new_tokens=4),
        dict(messages=[{"role": "user"}], max_new_tokens=4),
        dict(messages=["hello"], max_new_tokens=4),
        dict(messages=chat("x"), max_new_tokens=0),
        dict(messages=chat("x"), max_new_tokens=2.5),
        dict(messages=chat("x"), max_new_tokens=4, temperature=-0.1),
        dict(messages=chat("x"), max_new_tokens=4, temperature=float("nan")),
    ],
)
def test_bad_requests_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        GenRequest(**kwargs)


def test_every_backend_satisfies_the_protocol(backend):
    assert isinstance(OfflineBackend(), Backend)
    assert isinstance(backend, Backend)
    assert isinstance(OpenAIBackend("http://127.0.0.1:9/v1", "m"), Backend)


# ---------------------------------------------------------------------------- offline backend


def test_offline_backend_is_deterministic_and_varies_with_the_request():
    reqs = varied_requests(6) + [
        GenRequest(chat("one two three four five six"), 8, 1.0, seed=s) for s in range(3)
    ]
    first = OfflineBackend().generate(reqs)
    again = OfflineBackend().generate(reqs)
    assert [r.text for r in first] == [r.text for r in again]
    assert [r.key for r in first] == [r.key for r in reqs]
    assert [r.meta for r in first] == [r.meta for r in reqs]
    assert len({r.text for r in first[-3:]}) > 1  # another seed, another text
    assert all(r.backend == "offline" and r.model == "offline" for r in first)


def test_offline_backend_reports_length_and_takes_a_function():
    long = GenRequest(chat("a b c d e f g h i j"), max_new_tokens=4)
    res = OfflineBackend().generate([long])[0]
    assert res.finish_reason == "length" and len(res.text.split()) == 4
    assert sorted(res.text.split()) == sorted(scramble_last_user_message(long).split())

    echo = OfflineBackend(fn=lambda r: r.last_user_message().upper(), name="shout")
    res = echo.generate([long])[0]
    assert (res.text, res.finish_reason, res.model) == ("A B C D E F G H I J", "stop", "shout")


# ---------------------------------------------------------------------------- transformers backend


def test_batched_greedy_equals_one_at_a_time_in_order(backend):
    reqs = varied_requests(9)
    batched = backend.generate(reqs)
    single = [backend.generate([r])[0] for r in reqs]
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.key for r in batched] == [r.key for r in reqs]
    assert [r.meta for r in batched] == [r.meta for r in reqs]
    assert len({r.text for r in batched}) > 3  # the texts differ: the comparison means something
    reversed_texts = [r.text for r in backend.generate(reqs[::-1])]
    assert reversed_texts == [r.text for r in batched][::-1]
    assert {r.backend for r in batched} == {"transformers"}
    assert batched[0].model.startswith("tiny-qwen2-")


def test_batches_hold_prompts_of_like_length_and_results_keep_the_asked_order(tiny, monkeypatch):
    """A batch is padded to its longest prompt: mixing lengths spent compute on padding (run
    cpu-c's 230 test prompts: 86,386 padded tokens in the given order, 77,910 sorted, 77,240
    real). The prompts are now batched by length; results still come back in the order asked."""
    model, tokenizer = tiny
    widths, real_tokens = [], []
    real = model.generate

    def spy(**kwargs):
        widths.append(tuple(kwargs["input_ids"].shape))
        real_tokens.append(int(kwargs["attention_mask"].sum()))
        return real(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    lengths = [18, 1, 12, 3, 16, 2, 14, 4]  # long and short interleaved
    reqs = [GenRequest(chat(" ".join(WORDS[:n])), 3, meta={"n": n}) for n in lengths]
    out = TransformersBackend(model, tokenizer, batch_size=4).generate(reqs)
    assert [r.meta["n"] for r in out] == lengths
    sizes = [
        len(tokenizer(tokenizer.apply_chat_template(r.messages, tokenize=False,
                                                    add_generation_prompt=True),
                      add_special_tokens=False)["input_ids"])
        for r in reqs
    ]  # fmt: skip
    assert sum(real_tokens) == sum(sizes)
    in_order = 4 * max(sizes[:4]) + 4 * max(sizes[4:])
    by_length = sorted(sizes)
    assert widths == [(4, by_length[3]), (4, by_length[7])]  # shortest four, then the rest
    assert 4 * by_length[3] + 4 * by_length[7] < in_order


def test_one_token_groups_run_each_distinct_prompt_once_and_draw_as_if_alone(tiny, monkeypatch):
    """GRPO's pre-flight samples G one-token verdicts per prompt: run cpu-e spent 92 s on 24
    prompts x 4, four forward passes over each identical prompt. One pass per distinct prompt
    gives the same next-token distribution; each request must still draw its own seeded token,
    exactly what it gets on its own."""
    model, tokenizer = tiny
    prompts = [chat(" ".join(WORDS[:n])) for n in (5, 11)]
    reqs = [GenRequest(m, 1, temperature=1.0, seed=s) for m in prompts for s in range(4)]
    reqs += [GenRequest(m, 1) for m in prompts for _ in range(2)]  # greedy twice each
    alone = [TransformersBackend(model, tokenizer, batch_size=1).generate([r])[0] for r in reqs]
    rows = []
    real = model.generate

    def spy(**kwargs):
        rows.append(int(kwargs["input_ids"].shape[0]))
        return real(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    grouped = TransformersBackend(model, tokenizer, batch_size=8).generate(reqs)
    assert [r.text for r in grouped] == [r.text for r in alone]
    assert rows == [2, 2]  # the 8 sampled requests, then the 4 greedy ones: 2 prompts each
    sampled = [r.text for r in grouped[:4]]
    assert len(set(sampled)) > 1, "four seeds of a random model's prompt drew one token"
    assert grouped[8].text == grouped[9].text  # greedy: the same token for the same prompt


def test_left_padding_is_used_even_if_the_tokenizer_pads_right(tiny, monkeypatch):
    model, tokenizer = tiny
    monkeypatch.setattr(tokenizer, "padding_side", "right")
    seen = []
    real = model.generate

    def spy(**kwargs):
        seen.append(kwargs["attention_mask"])
        return real(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    short, long = GenRequest(chat("hi"), 4), GenRequest(chat(" ".join(WORDS)), 4)
    TransformersBackend(model, tokenizer, batch_size=2).generate([short, long])
    mask = seen[0]
    assert mask[0, 0] == 0 and mask[0, -1] == 1  # the short row is padded on the left
    assert bool(mask[1].all())


def test_finish_reason_length_and_stop(backend, tiny, monkeypatch):
    model, tokenizer = tiny
    req = GenRequest(chat("The market opened higher"), max_new_tokens=7)
    enc = tokenizer(
        tokenizer.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True),
        return_tensors="pt",
        add_special_tokens=False,
    )
    out = model.generate(**enc, max_new_tokens=7, do_sample=False)[0, enc["input_ids"].shape[1] :]
    assert len(out) == 7 and tokenizer.eos_token_id not in out.tolist()

    res = backend.generate([req])[0]
    assert res.finish_reason == "length"
    assert res.text == tokenizer.decode(out, skip_special_tokens=True)

    # Make the third generated token an end-of-turn token: generation must stop there.
    stop_id = int(out[2])
    first = out.tolist().index(stop_id)
    monkeypatch.setattr(model.generation_config, "eos_token_id", [tokenizer.eos_token_id, stop_id])
    res = TransformersBackend(model, tokenizer).generate([req])[0]
    assert res.finish_reason == "stop"
    assert res.text == tokenizer.decode(out[:first], skip_special_tokens=True)


def test_sampling_depends_on_the_seed_only(backend):
    import torch

    msgs = chat("Shares rose on Monday")
    s1, s1_again, s2 = (GenRequest(msgs, 10, temperature=1.0, seed=s) for s in (1, 1, 2))
    state = torch.random.get_rng_state()
    alone = backend.generate([s1])[0].text
    mixed = backend.generate([*varied_requests(3), s1_again, s2])
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    assert mixed[3].text == alone  # same seed, same sample, whatever else is in the call
    assert mixed[4].text != alone


def test_sampled_requests_share_one_generate_call_and_keep_their_own_seed(tiny, monkeypatch):
    """Sampled requests used to run one ``generate`` call each (a GRPO pre-flight group of G, or
    N best-of-N drafts, cost G or N calls). Batched, each row still samples under its own seed:
    the same text as alone, in the order asked."""
    model, tokenizer = tiny
    backend = TransformersBackend(model, tokenizer, batch_size=8)
    reqs = [
        GenRequest(r.messages, r.max_new_tokens, temperature=t, seed=s, meta=r.meta)
        for r, t, s in zip(varied_requests(6, seed=3), (1.0, 0.7, 1.0, 1.3, 1.0, 1.0),
                           (5, 6, 7, 8, 9, 5), strict=True)
    ]  # fmt: skip
    calls = []
    real = model.generate

    def counting(*args, **kwargs):
        calls.append(len(kwargs["input_ids"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting)
    batched = backend.generate(reqs)
    assert calls == [6]
    single = [backend.generate([r])[0] for r in reqs]
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.meta for r in batched] == [r.meta for r in reqs]
    assert len({r.text for r in batched}) > 3  # the samples differ: the comparison means something


def test_out_of_memory_splits_the_batch(backend, monkeypatch):
    import torch

    reqs = varied_requests(4, seed=3)
    expected = [r.text for r in backend.generate(reqs)]
    real = backend._generate_batch
    sizes = []

    def oom_above_one(batch):
        sizes.append(len(batch))
        if len(batch) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(batch)

    monkeypatch.setattr(backend, "_generate_batch", oom_above_one)
    assert [r.text for r in backend.generate(reqs)] == expected
    assert sizes == [4, 2, 1, 1, 2, 1, 1]

    monkeypatch.setattr(
        backend, "_generate_batch", lambda b: (_ for _ in ()).throw(torch.OutOfMemoryError())
    )
    with pytest.raises(ModelUnavailableError, match="max_new_tokens"):
        backend.generate(reqs[:1])


def test_adapter_models_need_an_explicit_name(tiny):
    model, tokenizer = tiny

    class WithAdapter:
        peft_config: ClassVar[dict] = {"default": object()}

    with pytest.raises(ConfigError, match="model_name"):
        TransformersBackend(WithAdapter(), tokenizer)
    named = TransformersBackend(model, tokenizer, model_name="tiny+sft-step-10")
    assert named.model == "tiny+sft-step-10"
