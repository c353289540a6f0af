"""The install check: import everything the GPU check imports, or say what is broken.

``scripts/install_offline.sh`` ends with ``python -m persrm_utils.setup.import_check``. An earlier
check imported only trl, datasets and bitsandbytes at the top level and printed OK over an install
that could not train: trl loads its trainers lazily, and ``from trl import GRPOTrainer`` is what
pulls in datasets' pyarrow, PIL and the rest. So this check imports the very names the training
code and the GPU check use, and unsloth first when a CUDA GPU is present (unsloth patches trl and
transformers when it is imported, and warns when they were imported before it).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from typing import Any

from persrm_utils.setup.import_order import cuda_available

#: (module, names taken from it), in import order. torch comes first: whether CUDA exists decides
#: whether unsloth is imported, and unsloth must then come before transformers, peft and trl.
IMPORTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("torch", ()),
    ("transformers", ("AutoModelForCausalLM", "AutoTokenizer", "BitsAndBytesConfig")),
    ("peft", ("LoraConfig", "PeftModel", "get_peft_model")),
    ("accelerate", ()),
    ("datasets", ("Dataset",)),
    ("pyarrow", ()),
    ("PIL", ("Image",)),
    ("bitsandbytes", ()),
    ("trl", ("SFTConfig", "SFTTrainer", "GRPOConfig", "GRPOTrainer", "RewardTrainer")),
    ("pydantic", ("BaseModel",)),
    ("tenacity", ()),
    ("gguf", ()),
)
#: Imported right after torch, and only where CUDA exists (unsloth refuses to import without).
UNSLOTH: tuple[str, tuple[str, ...]] = ("unsloth", ("FastLanguageModel",))
#: What ``import unsloth`` imports without a guard beyond torch and transformers (its trainer
#: patching imports every TRL trainer, hence datasets and pyarrow): named when absent.
UNSLOTH_NEEDS = ("unsloth_zoo", "trl", "datasets", "pyarrow", "bitsandbytes", "peft", "PIL")


def missing_modules(names: Sequence[str] = UNSLOTH_NEEDS) -> list[str]:
    """The top-level modules among ``names`` that cannot be found (nothing is imported)."""
    return [n for n in names if importlib.util.find_spec(n) is None]


def plan(cuda: bool) -> list[tuple[str, tuple[str, ...]]]:
    """The imports in order: torch, then unsloth when ``cuda``, then the rest."""
    first, *rest = IMPORTS
    return [first, *([UNSLOTH] if cuda else []), *rest]


def run_check(
    cuda: bool | None = None, importer: Callable[[str], Any] = importlib.import_module
) -> tuple[list[str], list[str]]:
    """(what imported, with versions; what failed, with the error). Never raises."""
    ok: list[str] = []
    failed: list[str] = []
    if cuda is None:
        try:
            importer("torch")
            cuda = cuda_available()
        except Exception:
            cuda = False
    for module, names in plan(cuda):
        try:
            mod = importer(module)
            for name in names:
                getattr(mod, name)  # trl and transformers import lazily: touch each name
        except Exception as err:  # any import-time failure is what this check reports
            failed.append(f"{module}: {type(err).__name__}: {str(err).splitlines()[0][:300]}")
            continue
        version = getattr(mod, "__version__", "")
        shown = f"{module} {version}".strip()
        ok.append(shown + (f" ({', '.join(names)})" if names else ""))
    if not cuda:
        ok.append("unsloth: not imported (no CUDA GPU here; it imports only on one)")
    return ok, failed


def main() -> int:
    ok, failed = run_check()
    for line in ok:
        print(f"  ok      {line}")
    for line in failed:
        print(f"  FAILED  {line}")
    if failed:
        print(
            "Import check FAILED: the lines above name what is missing or broken. Rebuild the "
            "wheelhouse with `make wheelhouse` (every part) and install it again.",
            file=sys.stderr,
        )
        return 1
    print("Import check passed: everything the GPU check imports is importable.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
