"""The exercises of notebook 00 (Set-up): each check recomputes the answer itself."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persrm_utils.errors import ConfigError
from persrm_utils.profiles import Profile, get_profile
from persrm_utils.run.folders import sha256_of

if TYPE_CHECKING:
    from persrm_utils.run.folders import RunFolder

from persrm_utils.classroom.checks import (
    Checked,
    _mapping,
    _not_answered,
    _ok,
    _run,
    _stage_record,
    _wrong,
)

# 00 · Set-up
# ----------------------------------------------------------------------------------------------


def check_00_warmup(answer: Mapping[str, str] | None, run: RunFolder | Path | str) -> Checked:
    """The versions of trl and transformers this run used, as stage 00 recorded them.

    Verifies ``answer == {"trl": ..., "transformers": ...}`` against the ``versions`` of
    00_setup in manifest.json: the manifest, not what is installed today, says which versions
    produced a run's results.
    """
    if answer is None:
        return _not_answered('manifest.json -> "stages" -> "00_setup" -> "versions".')
    folder = _run(run)
    versions = _stage_record(folder, "00_setup").versions
    expected = {name: versions.get(name) for name in ("trl", "transformers")}
    got = _mapping(answer, list(expected), "{'trl': '1.2.3', 'transformers': '4.5.6'}")
    given = {name: str(got[name]).strip() for name in expected}
    if given != expected:
        _wrong(
            f"Expected {expected} (manifest.json of run '{folder.manifest.run}', stage "
            f"00_setup), got {given}.",
            "RunFolder.open(session.path).manifest.stages['00_setup'].versions, or open "
            "manifest.json with json.load.",
        )
    return _ok(f"this run used trl {expected['trl']} and transformers {expected['transformers']}.")


def check_00_core(answer: str | None, run: RunFolder | Path | str) -> Checked:
    """The SHA-256 of environment.json, computed by the learner, matching the manifest's record.

    Verifies that ``answer`` is the hex digest of the file's bytes *and* that it equals the hash
    00_setup recorded: together they prove the file on disk is the one the stage wrote.
    """
    if answer is None:
        return _not_answered("hashlib.sha256(path.read_bytes()).hexdigest() for environment.json.")

    folder = _run(run)
    record = _stage_record(folder, "00_setup")
    recorded = {a.path: a.sha256 for a in record.artifacts}.get("environment.json")
    path = folder.path / "environment.json"
    on_disk = sha256_of(path)
    if recorded != on_disk:
        _wrong(
            f"environment.json no longer matches the manifest (recorded {recorded}, the file "
            f"now hashes to {on_disk}): it was changed after stage 00 finished.",
            "rerun notebooks/00_setup.ipynb for this run, then try again.",
        )
    if not isinstance(answer, str):
        _wrong(
            f"Expected the digest as a hex string, got {type(answer).__name__}.",
            "hashlib.sha256(data).hexdigest() returns the string.",
        )
    digest = answer.strip().lower()
    if digest == hashlib.sha256(str(path).encode()).hexdigest():
        _wrong(
            "That is the SHA-256 of the file's *name*, not of its contents.",
            "hash path.read_bytes(), not str(path).",
        )
    if digest != on_disk:
        _wrong(
            f"Expected the SHA-256 of {path} ({on_disk[:12]}..., as the manifest records), "
            f"got {digest[:12]}....",
            "open the file in binary mode ('rb') and hash all of its bytes.",
        )
    return _ok(f"environment.json hashes to {on_disk[:12]}..., exactly what the manifest records.")


def check_00_stretch(answer: Mapping[str, Any] | None, run: RunFolder | Path | str) -> Checked:
    """An override of a *real* profile field with a bad value, and the ConfigError it raised.

    Verifies that ``answer["field"]`` is a field of the profile (not a typo: the notebook already
    showed that case), that ``answer["error"]`` is a ConfigError naming that field, and that the
    same override of this run's profile really is refused.
    """
    if answer is None:
        return _not_answered("try get_profile(PROFILE, lora_r=0) inside try/except ConfigError.")

    got = _mapping(
        answer, ["field", "value", "error"], "{'field': 'lora_r', 'value': 0, 'error': err}"
    )
    field, value, error = got["field"], got["value"], got["error"]
    if field not in Profile.model_fields or field == "name":
        _wrong(
            f"'{field}' is not a field of the profile: that is the typo case the notebook "
            "already showed.",
            "pick a real field (describe_fields() lists them) and give it a value out of "
            "range or of the wrong type.",
        )
    if not isinstance(error, ConfigError):
        _wrong(
            f"answer['error'] should be the ConfigError you caught, got {type(error).__name__}.",
            "write `except ConfigError as err:` and store err.",
        )
    profile = _run(run).manifest.profile
    try:
        get_profile(profile, **{field: value})
    except ConfigError as err:
        if f"field '{field}'" not in str(error):
            _wrong(
                f"Your error does not name the field '{field}'; this one would: {err}",
                "store the exception raised by the override you put in the answer.",
            )
        return _ok(f"{field}={value!r} is refused, and the message says why: {err.problem}")
    _wrong(
        f"get_profile('{profile}', {field}={value!r}) is accepted: that value is valid.",
        "choose a value the field's type or range forbids (a negative rank, a word for a number).",
    )


# ----------------------------------------------------------------------------------------------
