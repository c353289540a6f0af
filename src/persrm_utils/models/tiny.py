"""A tiny model of a real architecture, built offline in a fraction of a second.

The smoke profile needs a model that loads, tokenizes, generates and trains through exactly the
same code as Qwen2.5-7B, without downloading anything. So we build one: a random-initialised
``Qwen2ForCausalLM`` (hidden 64, 2 layers) and a byte-level BPE tokenizer trained on the spot with
the ``tokenizers`` library, wrapped in ``PreTrainedTokenizerFast`` with a ChatML chat template.
The template marks assistant content with ``{% generation %}`` so that TRL's
``assistant_only_loss`` can mask everything the model did not write. It learns nothing useful:
its job is to prove the mechanics.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from persrm_utils.paths import cache_dir, data_dir

#: Special tokens: end of text (padding), ChatML turn markers.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
#: The judge's format tags: single tokens, but *not* special, so decoding keeps them.
FORMAT_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

#: ChatML, as Qwen2.5 and SmolLM2 use it, with generation markers around assistant turns.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

#: Enough text for the BPE trainer to learn the judge's vocabulary when no corpus is given.
_BUILTIN_TEXT = """\
You are a personalized reward model. Read the user's exemplars, infer their personal factors
(tone, diction, sentence length, punctuation, structure, topic handling), then decide which
response this user would prefer.
[Exemplar 1] Prompt: The market opened higher on Monday. Text: Shares rose 2.5 percent by noon.
[Prompt] The company said on Tuesday it would cut 300 jobs.
[Response A] Analysts said the cuts were expected. [Response B] Oh wow, what a day it was!
<think> The user writes short, factual sentences with numbers. Response A matches. </think>
<answer>[[A]]</answer> <answer>[[B]]</answer>
"""

TINY_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    vocab_size_target=512,
)


def build_tokenizer(texts: list[str] | None = None, vocab_size: int = 512):
    """Train a byte-level BPE tokenizer on ``texts`` (plus a built-in sample) in about 0.1 s.

    Byte-level means any UTF-8 text can be encoded, so nothing is ever ``<unk>``. ``padding_side``
    is given to the constructor because setting it afterwards is not saved with the tokenizer.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [_BUILTIN_TEXT, *(texts or [])]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in FORMAT_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=TINY_CONFIG["max_position_embeddings"],
    )


def build_model(tokenizer, seed: int = 0):
    """A random ``Qwen2ForCausalLM`` sized to the tokenizer; same seed, same weights."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    cfg = {k: v for k, v in TINY_CONFIG.items() if k != "vocab_size_target"}
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **cfg,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return model


def seed_texts() -> list[str]:
    """The built-in seed corpus (``data/seed/authors.jsonl``), read as plain text.

    The smoke profile trains its tokenizer on it so that the series' own data tokenizes into
    sensible pieces; every notebook gets the same tokenizer because the inputs are the same.
    """

    path = data_dir() / "seed" / "authors.jsonl"
    if not path.is_file():
        return []
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            texts.append(str(json.loads(line).get("text", "")))
    return texts


def _fingerprint(texts: list[str] | None, seed: int) -> str:
    payload = json.dumps(
        {"texts": texts or [], "seed": seed, "config": TINY_CONFIG, "template": CHAT_TEMPLATE},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def tiny_model_dir(texts: list[str] | None = None, seed: int = 0, root: Path | None = None) -> Path:
    """Build (once) and return a folder that ``AutoModelForCausalLM.from_pretrained`` loads.

    The folder name is a hash of the inputs, so a changed corpus or seed gives a new model and
    an unchanged one is reused. Written to a temporary folder first and renamed, so an interrupted
    build never leaves a half-written model behind.
    """
    base = (root or cache_dir()) / "tiny"
    target = base / f"tiny-qwen2-{_fingerprint(texts, seed)}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=base))
    try:
        tokenizer = build_tokenizer(texts)
        model = build_model(tokenizer, seed=seed)
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
