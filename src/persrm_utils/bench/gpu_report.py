"""``gpu_check.md``: the GPU check's JSON as a page a person reads in a minute.

One table per part, the GPU named at the top, and the caveat that matters most when the GPU at
hand is not the one the series targets: a datacenter GPU's seconds are not a T4's, while peak
memory carries over (same model, same settings, same kernels).
"""

from __future__ import annotations

from typing import Any

from persrm_utils.bench.timebox import failure_headline

CAVEAT = (
    "A datacenter GPU's time is not a T4's time: seconds per step measured here say nothing "
    "about a T4's speed, while peak VRAM carries over (same model, same settings, same "
    "kernels; the CUDA context, about 0.5 GB, comes on top)."
)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, dict | list):
        return (
            ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
            if isinstance(value, dict)
            else ", ".join(_fmt(v) for v in value)
        )
    return str(value).replace("|", "/").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def _kv(figures: dict[str, Any]) -> list[str]:
    return _table(["figure", "value"], [[k, v] for k, v in figures.items()])


def _mechanics(f: dict[str, Any]) -> list[str]:
    lines = _kv({"settings": f.get("settings")}) if f.get("settings") else []
    rows, failures = [], []
    for name, r in f.get("backends", {}).items():
        sft, grpo = r.get("sft", {}), r.get("grpo", {})
        error = r.get("error") or ""
        rows.append([name, r.get("status"), sft.get("s_per_step"), grpo.get("s_per_step"),
                     sft.get("peak_vram_reserved_gib"), grpo.get("peak_vram_reserved_gib"),
                     failure_headline(error) if error else r.get("reason")])  # fmt: skip
        if "\n" in error:  # the call chain, under the table, where it can be read
            where = f" (whole output: `{r['log']}`)" if r.get("log") else ""
            failures += ["", f"{name} failed{where}:", "", "```", error, "```"]
    if rows:
        header = ["backend", "status", "SFT s/step", "GRPO s/step", "SFT peak VRAM GiB",
                  "GRPO peak VRAM GiB", "note"]  # fmt: skip
        lines += ["", *_table(header, rows), *failures]
    if f.get("comparison"):
        lines += ["", *_kv(f["comparison"])]
    return lines


def _learning(f: dict[str, Any]) -> list[str]:
    lines = _kv({k: f[k] for k in ("profile", "data", "user_swap_items", "sft") if k in f})
    acc = f.get("accuracy", {})
    if acc:
        rows = [[m, r.get("n_pairs"), r.get("accuracy"), f"{_fmt(r.get('ci_low'))}–"
                 f"{_fmt(r.get('ci_high'))}", r.get("parse_failure_rate"),
                 r.get("swap_consistency")] for m, r in acc.items()]  # fmt: skip
        lines += ["", *_table(["model", "unseen pairs", "accuracy", "95% CI",
                               "parse failures", "swap consistency"], rows)]  # fmt: skip
    personal = f.get("personalization") or {}
    if personal:
        lines += ["", *_table(["judge", "user-swap", "95% CI", "n-grams on the same items",
                               "exemplar effect", "95% CI", "cross-author set (opening shown)",
                               "cross-author set (no opening)"],
                              [_personal_row(j, p) for j, p in personal.items()])]  # fmt: skip
    grpo = f.get("grpo")
    if grpo:
        curve = [[h.get("step"), h.get("reward"), h.get("reward_std")]
                 for h in grpo.get("reward_curve", [])]  # fmt: skip
        info = {k: v for k, v in grpo.items() if k != "reward_curve"}
        lines += ["", *_kv({"grpo": info}), "", *_table(["step", "reward", "reward std"], curve)]
    return lines


def _personal_row(judge: str, p: dict[str, Any]) -> list[Any]:
    """One judge's personalization figures: what notebook 05 reports, in one row."""

    def ci(part: Any) -> str:
        if not isinstance(part, dict):
            return "–"
        return f"{_fmt(part.get('ci_low'))}–{_fmt(part.get('ci_high'))}"

    def own(part: Any, key: str) -> Any:
        return part.get(key) if isinstance(part, dict) else part  # "not measured: …" as is

    def effect(form: str) -> str:
        cross = p.get("cross_author_set")
        if not isinstance(cross, dict):
            return _fmt(cross) if cross else "not measured"
        for row in cross.get("rows", []):
            if row.get("form") == form and row.get("model") == cross_judge(cross):
                e = row.get("exemplar_effect") or {}
                return f"{_fmt(row.get('accuracy'))}; effect {_fmt(e.get('effect'))} ({ci(e)})"
        return "–"

    def cross_judge(cross: dict[str, Any]) -> str | None:
        names = [r.get("model") for r in cross.get("rows", []) if r.get("exemplar_effect")]
        return names[0] if names else None

    swap, effect_k = p.get("user_swap"), p.get("exemplar_effect")
    return [judge, own(swap, "accuracy"), ci(swap), own(p.get("user_swap_char_ngrams"), "accuracy"),
            own(effect_k, "effect"), ci(effect_k), effect("opening"),
            effect("no opening")]  # fmt: skip


RENDERERS = {"mechanics": _mechanics, "learning": _learning}


def render_markdown(report: dict[str, Any]) -> str:
    """The whole page; parts without figures show their status and reason only."""
    env = report.get("parts", {}).get("environment", {}).get("figures", {})
    gpu = env.get("gpu_name", "not yet known")
    title = "GPU check (dry run on CPU)" if report.get("dry_run") else "GPU check"
    lines = [f"# {title}", "", f"GPU: **{gpu}**; started {report.get('started')}, "
             f"finished {report.get('finished') or 'not yet'}, "
             f"{_fmt(report.get('total_s'))} s in all.", "", CAVEAT, ""]  # fmt: skip
    for name, part in report.get("parts", {}).items():
        lines += [f"## {name}: {part.get('status')}", ""]
        meta = [f"{_fmt(part.get('seconds'))} s of a {_fmt(part.get('cap_s'))} s cap"]
        for key in ("reason", "error"):
            if part.get(key):
                meta.append(f"{key}: {_fmt(part[key])}")
        lines += ["; ".join(meta), ""]
        lines += [f"- {n}" for n in part.get("notes", [])]
        figures = part.get("figures") or {}
        if figures:
            lines += ["", *RENDERERS.get(name, _kv)(figures)]
        lines.append("")
    return "\n".join(lines)
