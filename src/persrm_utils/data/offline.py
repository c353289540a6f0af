"""Stages 01 and 02 in one call, with no generator model: exemplars and preference pairs.

Benchmarks and the GPU check need real pairs in seconds, on a machine that may have no second
model to write negatives with. This runs the same functions as notebooks 01 and 02
(:func:`~persrm_utils.data.exemplars.collect`, :func:`~persrm_utils.data.pairs.plan_pairs`,
:func:`~persrm_utils.data.pairs.make_pairs`) with the offline writers
(:func:`~persrm_utils.data.pairs.offline_backend`), so a change to the profile's recipe reaches them
too; only the negatives' wording differs from a run with an LLM generator.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from persrm_utils.data.exemplars import collect
from persrm_utils.data.pairs import make_pairs, offline_backend, plan_pairs
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.profiles import Profile
from persrm_utils.records import Exemplar, Pair, write_jsonl

SPLITS = ("train", "val", "test", "seen_test")


@dataclass
class OfflineData:
    exemplars: list[Exemplar]
    pairs: dict[str, list[Pair]]
    seconds: float

    @property
    def by_id(self) -> dict[str, Exemplar]:
        return {e.text_id: e for e in self.exemplars}

    def counts(self) -> dict[str, int]:
        return {split: len(self.pairs.get(split, [])) for split in SPLITS}

    def save(self, run_path: Path) -> Path:
        """Write ``exemplars.jsonl`` and ``pairs/<split>.jsonl`` as notebooks 01-02 do, so that
        :func:`~persrm_utils.train.commands.load_stage_inputs` and
        :func:`~persrm_utils.evaluate.held_out.eval_pairs` read them back."""
        write_jsonl(run_path / "exemplars.jsonl", self.exemplars)
        for split in SPLITS:
            write_jsonl(run_path / "pairs" / f"{split}.jsonl", self.pairs.get(split, []))
        return run_path


def offline_pairs(
    profile: Profile, c50_root: Path | None = None, cache_file: Path | None = None
) -> OfflineData:
    """The profile's exemplars (split by author) and its pairs, negatives written offline."""

    start = time.perf_counter()
    exemplars = collect(profile, c50_root=c50_root)
    planned = plan_pairs(exemplars, profile.max_exemplars, profile.seed)
    by_id = {e.text_id: e for e in exemplars}
    with tempfile.TemporaryDirectory() as tmp:
        cache = cache_file or Path(tmp) / "negatives.jsonl"
        generator = CachedGenerator(offline_backend(planned, by_id), cache)
        made = make_pairs(planned, exemplars, generator, profile.max_output_words,
                          profile.minor_replace_writer, progress=False)  # fmt: skip
    return OfflineData(exemplars, made.pairs, time.perf_counter() - start)
