"""The trained judge as a tool: "which of these two would this person prefer?" on new texts.

    from persrm_utils.use.persrm import PersRM

    judge = PersRM.from_run("smoke")         # base model + the run's GRPO (or SFT) adapter
    result = judge.compare(["a text I wrote ...", "another ..."], "Write about Monday.", a, b)
    result.verdict, result.agree, result.reasoning   # "A" / "B" / None, both orders agree?, why

    judge = PersRM.from_pretrained("exported/")        # a folder written by persrm export

The model is loaded once; :meth:`PersRM.compare_many` judges any number of pairs in batches.
Every pair is judged in both orders (A, B and then B, A), exactly as notebook 05 scores the
judge, because small judges like to answer "A": a verdict is given only when both orders name
the same text, otherwise ``verdict`` is None and ``agreement`` says why.

The same prompt layout as training is used (:func:`persrm_utils.judge.format.compare_messages`), and
the judge sees at most the run's ``max_exemplars`` exemplars (what it was trained with).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from persrm_utils.data.textsplit import split_opening
from persrm_utils.errors import DataError, ManifestError, PersRMError
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.generation.local import TransformersBackend
from persrm_utils.generation.requests import GenRequest, prompt_text
from persrm_utils.judge.format import compare_messages, full_answer, parse_verdict
from persrm_utils.paths import runs_dir
from persrm_utils.profiles import get_profile
from persrm_utils.records import Exemplar, iter_jsonl_checked, iter_jsonl_objects
from persrm_utils.run.folders import MANIFEST, RunFolder
from persrm_utils.train.sft import ADAPTER, load_with_adapter

#: Written beside an exported model: the settings the judge needs besides its weights.
EXPORT_INFO = "persrm.json"
#: The prompt shown when none is given: the two texts are then judged as they stand.
NO_PROMPT = "(no prompt given: judge the two texts as they are)"

Agreement = Literal["agree", "disagree", "invalid"]


@dataclass
class Comparison:
    """The judge's answer for one pair, asked in both orders.

    ``verdict`` is the letter (in the caller's order: A is the first text given) of the text
    this user would prefer, or None when the two orders disagree (``agreement="disagree"``) or
    at least one answer had no valid verdict (``"invalid"``). ``verdict_ab`` / ``verdict_ba``
    are the two answers, both mapped back to the caller's letters; ``reasoning`` is the
    ``<think>`` text of the first order; the raw completions are kept for inspection.
    """

    verdict: str | None
    agreement: Agreement
    verdict_ab: str | None
    verdict_ba: str | None
    reasoning: str | None
    reasoning_ba: str | None
    reason_ab: str
    reason_ba: str
    exemplars_shown: int
    completion_ab: str
    completion_ba: str

    @property
    def agree(self) -> bool:
        return self.agreement == "agree"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"agree": self.agree}


# ----------------------------------------------------------------------------------------------
# Input: exemplars and texts
# ----------------------------------------------------------------------------------------------


_EXEMPLAR_SHAPES = (
    'one JSON object per line, either {"text": "a whole text you wrote"} (two sentences or more) '
    'or {"prompt": "its opening sentence", "output": "the rest"} (what exemplars.jsonl holds); '
    "or a .txt file with the texts separated by lines holding only ---"
)


def exemplar_from_text(text: str, i: int = 1, where: dict | None = None) -> Exemplar:
    """One whole text as an exemplar (first sentence = prompt, rest = output)."""

    try:
        prompt, output = split_opening(text)
    except DataError as exc:
        raise DataError(
            exc.problem, exc.fix, **(where or {"field": f"exemplars[{i - 1}]"})
        ) from None
    return Exemplar(author_id="user", text_id=f"user/{i:03d}", prompt=prompt, output=output,
                    source="own")  # fmt: skip


def as_exemplars(items: Iterable[Exemplar | str | dict]) -> list[Exemplar]:
    """Exemplars from Exemplar objects, whole texts, or ``{"text"}`` / ``{"prompt", "output"}``."""
    out: list[Exemplar] = []
    for i, item in enumerate(items, 1):
        if isinstance(item, Exemplar):
            out.append(item)
        elif isinstance(item, str):
            out.append(exemplar_from_text(item, i))
        elif isinstance(item, dict):
            out.append(_exemplar_from_object(item, i, {"field": f"exemplars[{i - 1}]"}))
        else:
            raise DataError(
                f"exemplar {i} is a {type(item).__name__}, not a text",
                f"pass the user's texts as strings; {_EXEMPLAR_SHAPES}.",
                field=f"exemplars[{i - 1}]",
            )
    return out


def _exemplar_from_object(obj: dict, i: int, where: dict) -> Exemplar:
    text = obj.get("text")
    if isinstance(text, str) and text.strip():
        return exemplar_from_text(text, i, where)
    prompt, output = obj.get("prompt"), obj.get("output")
    if isinstance(prompt, str) and isinstance(output, str) and prompt.strip() and output.strip():
        return Exemplar(author_id=str(obj.get("author_id") or "user"),
                        text_id=str(obj.get("text_id") or f"user/{i:03d}"),
                        prompt=prompt, output=output, source="own")  # fmt: skip
    keys = ", ".join(sorted(obj)) or "none"
    raise DataError(
        f"this exemplar has no non-empty 'text', nor 'prompt' and 'output' (its fields: {keys})",
        f"give each exemplar as {_EXEMPLAR_SHAPES}.",
        **where,
    )


def read_exemplars_file(path: Path | str) -> list[Exemplar]:
    """A user's exemplars from a file: JSONL (``text`` or ``prompt``/``output`` per line) or .txt.

    A file in any other shape is refused with the file, the line and the shapes that work.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", "check the path of the exemplars file.", path=str(path))
    if path.is_dir():
        raise DataError(
            "is a folder, not an exemplars file", f"point at one file: {_EXEMPLAR_SHAPES}.",
            path=str(path),
        )  # fmt: skip
    if path.suffix.lower() == ".txt":
        texts = [t.strip() for t in _read_text(path).split("\n---\n") if t.strip()]
        out = [exemplar_from_text(t, i, {"path": str(path), "field": f"text {i}"})
               for i, t in enumerate(texts, 1)]  # fmt: skip
    else:
        out = [_exemplar_from_object(obj, n, {"path": str(path), "line": n})
               for n, obj in iter_jsonl_objects(path)]  # fmt: skip
    if not out:
        raise DataError("holds no exemplars", f"write {_EXEMPLAR_SHAPES}.", path=str(path))
    return out


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"is not UTF-8 text (byte offset {exc.start})", "re-save it as UTF-8.", path=str(path)
        ) from None


def text_or_file(value: str, name: str) -> str:
    """A command-line value that is either the text itself or the path of a file holding it."""
    path = Path(value)
    try:  # a long text is not a file name (and some systems raise for too long a name)
        is_file = len(value) < 4096 and "\n" not in value and path.is_file()
    except OSError:
        is_file = False
    if is_file:
        text = _read_text(path)
        if not text.strip():
            raise DataError(f"{name} is empty", f"write the text of {name} into it.",
                            path=str(path))  # fmt: skip
        return text.strip()
    if not value.strip():
        raise DataError(
            f"{name} is empty",
            f"give {name} as the text itself or as the path of a file that holds it.",
            field=name,
        )
    return value.strip()


def _require_text(value: Any, name: str, where: dict | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        got = "empty" if isinstance(value, str) else f"a {type(value).__name__}, not a text"
        raise DataError(f"{name} is {got}", f"give {name} some text.",
                        **(where or {"field": name}))  # fmt: skip
    return value


# ----------------------------------------------------------------------------------------------
# Finding a run's adapter
# ----------------------------------------------------------------------------------------------


def resolve_run(run: str | Path) -> Path:
    """A run folder from a name (under the runs folder) or a path; a clear error otherwise."""

    candidates = [Path(run)] if Path(run).is_absolute() else [Path(run), runs_dir() / str(run)]
    for folder in candidates:
        if (folder / MANIFEST).is_file():
            return folder
    root = runs_dir()
    known = (
        [p.name for p in sorted(root.iterdir()) if (p / MANIFEST).is_file()]
        if root.is_dir()
        else []
    )
    listing = f"runs in {root}: {', '.join(known)}" if known else f"{root} holds no runs yet"
    raise ManifestError(
        f"Run '{run}' not found: no manifest.json in {' or '.join(str(c) for c in candidates)} "
        f"({listing}).",
        "Pass --run with the name of a run folder (or its path), or train one first: "
        "`persrm run --profile smoke`.",
    )


def find_adapter(run_path: Path, adapter: str = "auto") -> tuple[str, Path]:
    """(``"grpo"`` or ``"sft"``, its folder): the GRPO adapter when there is one, else SFT's."""

    order = {"auto": ("grpo", "sft"), "grpo": ("grpo",), "sft": ("sft",)}
    if adapter not in order:
        raise PersRMError(f"adapter '{adapter}' is not one of auto, grpo, sft", "pick one.")
    for name in order[adapter]:
        folder = run_path / name / ADAPTER
        if (folder / "adapter_config.json").is_file():
            return name, folder
    looked = " and ".join(str(run_path / n / ADAPTER) for n in order[adapter])
    raise DataError(
        f"run '{run_path.name}' has no trained adapter (looked for adapter_config.json in "
        f"{looked})",
        f"train it first: `persrm run --run {run_path.name} --from 03` (03 trains the SFT "
        "adapter, 04 the GRPO one), or pass --adapter sft if only SFT has run.",
        path=str(run_path),
    )


def weights_stamp(folder: Path) -> str:
    """A short fingerprint of the weight files in ``folder`` (names, sizes, modification times).

    Cheap on a model of any size, and it changes whenever training or an export writes them.
    """
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    blob = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_profile(run_path: Path):
    """The profile a run was made with: its name and overrides, from the manifest."""

    manifest = RunFolder.open(run_path).manifest
    return get_profile(manifest.profile, **manifest.overrides)


# ----------------------------------------------------------------------------------------------
# The judge
# ----------------------------------------------------------------------------------------------


class PersRM:
    """A loaded personalized reward model: judge pairs of texts for a user, in both orders."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str,
        max_new_tokens: int,
        max_exemplars: int,
        batch_size: int = 8,
        info: dict[str, Any] | None = None,
        prefix: str = "",
        weights_stamp: str = "",
    ) -> None:

        self.model, self.tokenizer = model, tokenizer
        self.prefix = prefix  # the start of each answer the harness writes (verdict-only judges)
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.max_exemplars = max_exemplars
        self.info = dict(info or {})
        self.last_cache_stats = None  # what the last compare_many(cache=...) read back / made
        # The cache of compare_many(cache=...) files answers under this name: the stamp of the
        # weights' files keeps a run trained again from being served its old answers.
        model_name = f"{name}@{weights_stamp}" if weights_stamp else name
        self.backend = TransformersBackend(model, tokenizer, batch_size=batch_size,
                                           model_name=model_name)  # fmt: skip

    def __repr__(self) -> str:
        return f"PersRM({self.name!r}, max_exemplars={self.max_exemplars})"

    @classmethod
    def from_run(cls, run: str | Path, adapter: str = "auto", batch_size: int = 8) -> PersRM:
        """The run's base model with its GRPO adapter (or SFT's, see ``adapter``), loaded once."""

        run_path = resolve_run(run)
        which, folder = find_adapter(run_path, adapter)
        profile = run_profile(run_path)
        loaded = load_with_adapter(profile, folder)
        info = {"run": run_path.name, "adapter": which, "profile": profile.name}
        return cls(loaded.model, loaded.tokenizer, f"persrm:{run_path.name}:{which}",
                   profile.max_completion_length, profile.max_exemplars, batch_size,
                   info, profile.answer_prefix, weights_stamp(folder))  # fmt: skip

    @classmethod
    def from_pretrained(cls, folder: str | Path, batch_size: int = 8) -> PersRM:
        """A model folder written by :func:`persrm_utils.use.export.export_run` (plain
        transformers).
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(folder)
        info_file = folder / EXPORT_INFO
        if not info_file.is_file():
            raise DataError(
                f"no {EXPORT_INFO} here, so this is not a folder written by `persrm export`",
                "point at the folder `persrm export --out` wrote, or use PersRM.from_run.",
                path=str(folder),
            )
        info = json.loads(info_file.read_text())
        tokenizer = AutoTokenizer.from_pretrained(str(folder), padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
        return cls(model, tokenizer, f"persrm-export:{info.get('run')}:{info.get('adapter')}",
                   int(info["max_new_tokens"]), int(info["max_exemplars"]), batch_size,
                   info, str(info.get("answer_prefix", "")), weights_stamp(folder))  # fmt: skip

    # -- judging -------------------------------------------------------------------------------

    def compare(
        self,
        exemplars: Sequence[Exemplar | str | dict] | str,
        prompt: str | None,
        a: str,
        b: str,
    ) -> Comparison:
        """Which of ``a`` and ``b`` would the author of ``exemplars`` prefer (both orders).

        ``exemplars`` is a list of the user's texts (strings, :class:`Exemplar` objects or
        ``{"text"}`` / ``{"prompt", "output"}`` dicts); a single string is one whole text, one
        exemplar, never a list of characters. At least one is needed: the judge knows the user
        only through them. ``prompt`` is a string, or None to judge the texts as they stand.
        ``a`` and ``b`` must differ: no judge can prefer one of two identical texts.

        The judge sees at most ``max_exemplars`` exemplars (what it was trained with). When the
        chat would not fit the model's context with room for the answer, exemplars are dropped
        from the end, with a warning that says how many (``exemplars_shown`` counts those
        seen); when even one does not fit, the pair is refused.
        """
        return self.compare_many([{"exemplars": exemplars, "prompt": prompt, "a": a, "b": b}])[0]

    def compare_many(
        self, items: Sequence[dict], cache: Path | str | None = None, progress: bool = False
    ) -> list[Comparison]:
        """Judge many pairs in batches: each item is ``{"exemplars", "prompt", "a", "b"}``.

        Every item is checked (see :meth:`compare`) before anything is generated. With
        ``cache`` (a JSONL file), every answer is written there as soon as it is generated and
        read back on the next call with the same items and weights, so a batch killed halfway
        resumes instead of starting over (``persrm judge --batch`` uses this).
        """

        requests, shown = [], []
        for i, item in enumerate(items):
            where = {"field": f"items[{i}]"} if len(items) > 1 else None
            prompt, a, b = pair_fields(item, where)
            exemplars = self._fit(i, prompt, a, b, exemplars_list(item.get("exemplars"), where))
            shown.append(len(exemplars))
            for first, second in ((a, b), (b, a)):
                messages = compare_messages(prompt, first, second, exemplars)
                requests.append(GenRequest(messages, self.max_new_tokens, prefix=self.prefix))
        if cache is None:
            results = self.backend.generate(requests)
        else:
            generator = CachedGenerator(self.backend, cache)
            results = generator.generate(requests, progress=progress, desc="judging")
            self.last_cache_stats = generator.cache_stats
        return [
            _comparison(
                full_answer(self.prefix, results[2 * i].text),
                full_answer(self.prefix, results[2 * i + 1].text),
                shown[i],
            )
            for i in range(len(items))
        ]

    def context_length(self) -> int | None:
        """The most tokens the model reads at once (prompt and answer), from its config."""
        config = getattr(self.model, "config", None)
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        value = getattr(self.tokenizer, "model_max_length", None)
        return value if isinstance(value, int) and 0 < value < 10_000_000 else None

    def _prompt_tokens(self, prompt: str, a: str, b: str, exemplars: list[Exemplar]) -> int:
        """Tokens of the judge's chat in the longer of its two orders, as generation sees it."""
        return max(
            len(
                self.tokenizer(
                    prompt_text(self.tokenizer, compare_messages(prompt, x, y, exemplars),
                                self.prefix),
                    add_special_tokens=False,
                )["input_ids"]
            )
            for x, y in ((a, b), (b, a))
        )  # fmt: skip

    def _fit(
        self, i: int, prompt: str, a: str, b: str, exemplars: list[Exemplar]
    ) -> list[Exemplar]:
        """The first ``max_exemplars`` exemplars, fewer if the chat would overflow the context."""
        exemplars = exemplars[: self.max_exemplars]
        limit = self.context_length()
        if limit is None:
            return exemplars
        budget = limit - self.max_new_tokens
        given = len(exemplars)
        while (need := self._prompt_tokens(prompt, a, b, exemplars)) > budget:
            if len(exemplars) == 1:
                raise DataError(
                    f"pair {i + 1}: the judge's chat (the prompt, both responses and one "
                    f"exemplar) is {need} tokens; with {self.max_new_tokens} tokens for its "
                    f"answer that is past the model's context of {limit} tokens",
                    "shorten the responses, the prompt or the exemplar (nothing is cut "
                    "silently: a judge that never saw the end of a text cannot judge it).",
                    field="exemplars",
                )
            exemplars = exemplars[:-1]
        if len(exemplars) < given:
            warnings.warn(
                f"pair {i + 1}: {given - len(exemplars)} of {given} exemplars left out so that "
                f"the judge's chat ({need} tokens) and its answer ({self.max_new_tokens}) fit the "
                f"model's context of {limit} tokens; the judge saw {len(exemplars)} "
                "(exemplars_shown); shorter exemplars would let it see more",
                UserWarning,
                stacklevel=3,
            )
        return exemplars


def exemplars_list(raw: Any, where: dict | None = None) -> list[Exemplar]:
    """The exemplars of one pair: a list of texts, or one text (a string or dict) on its own.

    None of them is an error, said the way ``persrm judge`` says it: the judge knows the user
    only through their texts.
    """
    at = where or {"field": "exemplars"}
    if isinstance(raw, str | dict | Exemplar):
        raw = [raw]  # one text, not a sequence of characters (or of a dict's keys)
    elif raw is not None and not isinstance(raw, Iterable):
        raise DataError(
            f"exemplars is a {type(raw).__name__}, not a list of texts",
            f"pass the user's texts as a list of strings; {_EXEMPLAR_SHAPES}.",
            **at,
        )
    exemplars = as_exemplars(raw or [])
    if not exemplars:
        raise DataError(
            "no exemplars: the judge needs the user's own texts to know them",
            'pass one or more texts the user wrote, e.g. compare(["a text I wrote. ..."], '
            "prompt, a, b) (on the command line: --exemplars FILE).",
            **at,
        )
    return exemplars


def pair_fields(item: dict, where: dict | None = None) -> tuple[str, str, str]:
    """``(prompt, a, b)`` of one pair, checked: texts, a prompt that is text or absent, a != b.

    ``where`` locates the pair in errors; without a field in it, the field at fault is named.
    """

    def at(field: str) -> dict:
        return where if where and "field" in where else {**(where or {}), "field": field}

    a = _require_text(item.get("a"), "response A", where)
    b = _require_text(item.get("b"), "response B", where)
    if " ".join(a.split()) == " ".join(b.split()):
        raise DataError(
            "response A and response B are the same text, and no judge can prefer one of two "
            "identical texts",
            "pass two different responses.",
            **at("b"),
        )
    prompt = item.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise DataError(
            f"the prompt is a {type(prompt).__name__}, not a text",
            "pass the prompt both responses answer as a string, or None to judge the two texts "
            "as they stand.",
            **at("prompt"),
        )
    return (prompt if prompt and prompt.strip() else NO_PROMPT), a, b


def _comparison(text_ab: str, text_ba: str, shown: int) -> Comparison:

    ab, ba = parse_verdict(text_ab), parse_verdict(text_ba)
    back = {"A": "B", "B": "A", None: None}[ba.letter]  # B, A order: its "A" is the caller's B
    if ab.letter is None or back is None:
        agreement: Agreement = "invalid"
    else:
        agreement = "agree" if ab.letter == back else "disagree"
    return Comparison(
        verdict=ab.letter if agreement == "agree" else None,
        agreement=agreement,
        verdict_ab=ab.letter,
        verdict_ba=back,
        reasoning=ab.think,
        reasoning_ba=ba.think,
        reason_ab=ab.reason,
        reason_ba=ba.reason,
        exemplars_shown=shown,
        completion_ab=text_ab,
        completion_ba=text_ba,
    )


# ----------------------------------------------------------------------------------------------
# Batch files
# ----------------------------------------------------------------------------------------------


#: How many bad lines of a batch file one error lists (the count says how many more there are).
MAX_BAD_LINES_LISTED = 20

_BATCH_SHAPE = (
    'each line needs {"a": "first text", "b": "second text"} (and optionally "id", "prompt", '
    '"exemplars": ["a text by the user", ...]).'
)


def read_batch(path: Path | str, default_exemplars: Sequence[Exemplar] | None) -> list[dict]:
    """A JSONL of pairs to judge: ``{"a", "b"}`` and optionally ``"id"``, ``"prompt"``,
    ``"exemplars"`` (a list of texts; default: the ``--exemplars`` file).

    Every line is checked before anything is judged, and every bad line is reported in one
    error (up to :data:`MAX_BAD_LINES_LISTED`, then a count), not only the first.
    """
    path = Path(path)
    items: list[dict] = []
    bad: list[DataError] = []
    for n, obj in iter_jsonl_checked(path):
        if isinstance(obj, DataError):
            bad.append(obj)
            continue
        try:
            items.append(_batch_item(obj, path, n, default_exemplars))
        except DataError as err:
            bad.append(err)
    if len(bad) == 1:
        raise bad[0]
    if bad:
        listed = "\n".join(f"  {err}" for err in bad[:MAX_BAD_LINES_LISTED])
        more = len(bad) - MAX_BAD_LINES_LISTED
        tail = f"\n  ... and {more} more bad lines" if more > 0 else ""
        raise DataError(
            f"{len(bad)} lines cannot be judged (nothing was judged):\n{listed}{tail}\n",
            f"correct every line listed; {_BATCH_SHAPE}",
            path=str(path),
        )
    if not items:
        raise DataError("holds no pairs", 'write one {"a": ..., "b": ...} per line.',
                        path=str(path))  # fmt: skip
    return items


def _batch_item(
    obj: dict, path: Path, n: int, default_exemplars: Sequence[Exemplar] | None
) -> dict:
    """One checked line of a batch file (see :func:`read_batch`)."""
    where = {"path": str(path), "line": n}
    for key in ("a", "b"):
        if key not in obj:
            raise DataError(f"missing field '{key}'", _BATCH_SHAPE, **where, field=key)
        _require_text(obj[key], f"'{key}'", {**where, "field": key})
    pair_fields(obj, where)
    raw = obj.get("exemplars")
    if raw is None:
        if not default_exemplars:
            raise DataError(
                "this line has no 'exemplars' and no --exemplars file was given",
                'add "exemplars": ["a text by the user", ...] to the line, or pass '
                "--exemplars FILE for every line.",
                **where, field="exemplars",
            )  # fmt: skip
        exemplars = list(default_exemplars)
    elif isinstance(raw, list):
        exemplars = [
            _exemplar_from_object(e, j, {**where, "field": f"exemplars[{j - 1}]"})
            if isinstance(e, dict) else exemplar_from_text(
                _require_text(e, f"exemplars[{j - 1}]", where), j,
                {**where, "field": f"exemplars[{j - 1}]"})
            for j, e in enumerate(raw, 1)
        ]  # fmt: skip
        if not exemplars:
            raise DataError(
                "'exemplars' is an empty list: the judge needs the user's own texts to know them",
                'write "exemplars": ["first text", ...], or leave the field out to use the '
                "--exemplars file.",
                **where, field="exemplars",
            )  # fmt: skip
    else:
        raise DataError(
            f"'exemplars' is a {type(raw).__name__}, not a list of texts",
            'write "exemplars": ["first text", "second text"].',
            **where, field="exemplars",
        )  # fmt: skip
    return {"id": obj.get("id", n), "prompt": obj.get("prompt"), "a": obj["a"], "b": obj["b"],
            "exemplars": exemplars}  # fmt: skip


def batch_cache_path(out: Path | str) -> Path:
    """Where ``persrm judge --batch`` keeps each answer as it comes, beside ``--out``.

    A killed batch leaves it behind, and the next run with the same ``--out`` reads it back
    instead of judging those pairs again; it is removed once ``--out`` is written.
    """
    out = Path(out)
    return out.with_name(f".{out.name}.partial.jsonl")


def check_writable(path: Path | str, flag: str, folder: bool = False) -> Path:
    """Refuse, before any work, an output path this process cannot write (a file by default).

    It tries what the writer will do later: create a file in the folder that will hold
    ``path`` (the nearest one that exists, since missing folders are created), and, for an
    existing output folder that will be replaced, in that folder too. Permission bits are
    not read, because they do not tell the whole story (root, read-only mounts, ACLs).
    Nothing is left behind.
    """
    path = Path(path)
    if not folder and path.is_dir():
        raise DataError(
            "is a folder", f"give {flag} a file path, e.g. {path / 'verdicts.jsonl'}.",
            path=str(path),
        )  # fmt: skip
    if folder and path.exists() and not path.is_dir():
        raise DataError("is a file, not a folder", f"choose a folder for {flag}.", path=str(path))
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(
            f"cannot be created: {parent} is a file, not a folder",
            f"choose another {flag}.",
            path=str(path),
        )
    for where in [parent] + ([path] if folder and path.is_dir() else []):
        probe = where / f".persrm-write-check-{uuid.uuid4().hex[:8]}"
        try:
            probe.touch(exist_ok=False)
            probe.unlink()
        except OSError as err:
            raise DataError(
                f"cannot be written: {where} does not accept new files "
                f"({err.strerror or type(err).__name__})",
                f"make {where} writable, or choose another {flag}; nothing was done yet.",
                path=str(path),
            ) from None
    return path


def write_batch(path: Path | str, items: Sequence[dict], results: Sequence[Comparison]) -> Path:
    """One JSON line per pair: its id, the verdict, both orders, the reasoning, the completions.

    Written atomically (temporary file, then rename), so a reader never sees half a file; a
    failed write removes its temporary file.
    """

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for item, res in zip(items, results, strict=True):
                fh.write(json.dumps({"id": item.get("id"), **res.to_dict()}, ensure_ascii=False))
                fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
