"""The results page: every model and baseline of one run, as Markdown, from measured files only.

Built from ``runs/<name>/eval/`` and the manifest, so the page can always be regenerated and
never holds a number that the run did not produce. Models that were not evaluated in the run are
listed as "not run" rather than left out.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import pandas as pd

from persrm_utils.evaluate.metrics import format_accuracy, format_interval
from persrm_utils.judge.diagnosis import personalization_message
from persrm_utils.run.figures import FIGURES, preflight_trained_on
from persrm_utils.run.folders import RunFolder

ALL_MODELS = (
    "random",
    "stylometric (char n-grams)",
    "Bradley-Terry RM",
    "base (zero-shot)",
    "SFT",
    "SFT + GRPO",
)


def _fmt(row: pd.Series) -> str:
    return format_accuracy(row)


def _table(df: pd.DataFrame, index: str, columns: str | None) -> str:
    if columns is None:
        out = pd.DataFrame(
            {
                "accuracy [95% CI]": df.apply(_fmt, axis=1),
                "pairs": df["n_pairs"].astype(int),
                "swap consistency": df["swap_consistency"].map("{:.3f}".format),
                "parse failures": df["parse_failure_rate"].map("{:.3f}".format),
                "says A": df["position_bias"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}"),
            }
        )
        out.index = df[index]
        return out.to_markdown()
    cells = df.assign(cell=df.apply(format_accuracy, axis=1, with_n=True))
    pivot = cells.pivot(index=index, columns=columns, values="cell")
    return pivot.to_markdown()


def write_results_page(run_path: Path, dest: Path) -> Path:
    """Write the Markdown page for the run at ``run_path`` to ``dest``.

    Plots are linked as the run folder holds them (``figures/<plot>.png``, beside the page);
    :func:`persrm_utils.run.figures.publish_page_plots` copies and relinks them when the page
    is published in the docs.
    """
    run = RunFolder.open(run_path)
    eval_dir = run.path / "eval"
    overall = pd.read_csv(eval_dir / "overall.csv")
    by_type = pd.read_csv(eval_dir / "by_negative_type.csv")
    by_seen = pd.read_csv(eval_dir / "by_seen.csv")
    info = json.loads((eval_dir / "info.json").read_text())
    record = run.manifest.stages.get("05_evaluation")
    versions = record.versions if record else {}
    hardware = record.hardware if record else {}
    missing = [m for m in ALL_MODELS if m not in set(overall["model"])]
    stage_rows = [
        f"| {name} | {rec.status} | {rec.seconds if rec.seconds is not None else '–'} |"
        for name, rec in run.manifest.stages.items()
    ]
    lines = [
        f"# Results: run `{run.manifest.run}` (profile `{run.manifest.profile}`)",
        "",
        f"Generated {_dt.date.today().isoformat()} from `runs/{run.manifest.run}/eval/` by "
        "`persrm_utils.evaluate.results_page.write_results_page`. Every number below was measured "
        "in this run.",
        "",
        f"- **Data**: {info['data']}",
        f"- **Evaluated pairs**: {info['pairs']} (each judged in both A/B orders)",
        f"- **Hardware**: {hardware.get('cpu_count', '?')} CPU cores, "
        f"{hardware.get('ram_gb', '?')} GB RAM, GPU: {hardware.get('gpu_name') or 'none'}",
        "- **Versions**: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        "",
        *_personalization_section(eval_dir),
        "## All models and baselines (unseen test authors)",
        "",
        _table(overall, "model", None),
        "",
        "Not run in this run: " + (", ".join(missing) if missing else "none") + ".",
        "",
        "## By negative type (accuracy [95% CI], n pairs; no interval below 10 pairs)",
        "",
        _table(by_type, "model", "negative_type"),
        "",
        "## Seen vs unseen authors (accuracy [95% CI], n pairs; no interval below 10 pairs)",
        "",
        _table(by_seen, "model", "seen"),
        "",
        "## Figures",
        "",
        f"![accuracy by negative type]({FIGURES}/05_by_type.png)",
        f"![accuracy vs k]({FIGURES}/05_by_k.png)",
        f"![seen vs unseen]({FIGURES}/05_seen.png)",
        f"![position bias]({FIGURES}/05_position_bias.png)",
        "",
        "## Stage times (seconds)",
        "",
        "| stage | status | seconds |",
        "| --- | --- | --- |",
        *stage_rows,
        "",
    ]
    lines += _training_section(run.path)
    lines += _best_of_n_section(run.path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(lines))
    return dest


def _interval(row: dict | None, key: str, signed: bool = False) -> str:
    if not row or row.get(key) is None:
        return "not measured"
    return format_interval(row[key], row["ci_low"], row["ci_high"], int(row["n_pairs"]), signed)


def _personalization_section(eval_dir: Path) -> list[str]:
    """Does the judge read the person? Exemplar effect and user-swap test, one line each."""
    head = ["## Personalization (unseen authors)", ""]
    data = _read_json(eval_dir / "personalization.json")
    if not data:
        return [*head, "Not measured in this run (no `eval/personalization.json`).", ""]
    lines = [
        *head,
        f"User-swap test: {data['user_swap_items']} items of two unseen authors' real texts, "
        "each judged with both authors' exemplars in both orders, no opening shown (0.5 exactly "
        "for a judge that ignores the exemplars). Exemplar effect: accuracy with the exemplars "
        f"minus with none, on the same {data.get('unseen_pairs', '?')} unseen-author pairs "
        "(paired 95% interval).",
        "",
    ]
    for name, row in data["models"].items():
        swap = row.get("user_swap")
        both = "–" if not swap or swap.get("both_right") is None else f"{swap['both_right']:.3f}"
        lines += [
            f"**{name}**",
            "",
            f"- user-swap accuracy: {_interval(swap, 'accuracy')} (right under both users: {both})",
            f"- exemplar effect: {_interval(row.get('exemplar_effect'), 'effect')}",
            "",
        ]
    final = data["models"].get(data.get("final", ""))
    if final:
        lines += [personalization_message(final.get("exemplar_effect"), final.get("user_swap")), ""]
    cross = _cross_author_set_lines(data.get("cross_author_set"), data.get("final", ""))
    if cross and (eval_dir.parent / FIGURES / "05_cross_author_set.png").is_file():
        cross += [f"![cross-author set]({FIGURES}/05_cross_author_set.png)", ""]
    return lines + cross


def _cross_author_set_lines(cross: dict | None, final: str) -> list[str]:
    """The cross-author set (notebook 05, ``eval_cross_author_pairs``): per form, each judge's
    accuracy, its exemplar effect where it ran at k = 0, and the final judge's paired lead."""
    if not cross:
        return []
    lines = [
        "### Cross-author set",
        "",
        f"{cross['items']} items of unseen authors: the author's real continuation against "
        "another unseen author's, each judged with its opening shown and with none, with "
        f"{cross['k']} exemplar(s) and with none (k = 0); paired 95% intervals.",
        "",
    ]
    for form in ("opening", "no opening"):
        rows = [r for r in cross["rows"] if r["form"] == form]
        if not rows:
            continue
        lines += [f"**{'With the opening' if form == 'opening' else 'No opening'}**", ""]
        for r in rows:
            parts = [f"accuracy {_interval(r, 'accuracy')}"]
            effect = r.get("exemplar_effect")
            if effect:
                parts.append(
                    f"exemplar effect {_interval(effect, 'effect', True)} (k = 0: "
                    f"{effect['accuracy_0']:.3f})"
                )
            if r.get("final_minus"):
                lead = _interval(r["final_minus"], "difference", True)
                parts.append(f"{final} minus this {lead}")
            lines.append(f"- {r['model']}: {'; '.join(parts)}")
        lines.append("")
    return lines


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _training_section(run_path: Path) -> list[str]:
    """What SFT and GRPO did, and what each judge's verdicts say about it (files of 03-05)."""
    lines = ["## Training and diagnosis", ""]
    sft_log = _read_json(run_path / "sft" / "train_log.json")
    sft_val = _read_json(run_path / "sft" / "eval_before_after.json")
    if sft_log and sft_log.get("losses"):
        losses = sft_log["losses"]
        lines.append(
            f"- **SFT**: {sft_log.get('steps')} steps on {sft_log.get('examples')} traces in "
            f"{sft_log.get('seconds', 0):.0f} s, loss {losses[0][1]:.3f} -> {losses[-1][1]:.3f}."
        )
    if sft_val:
        b, a = sft_val["before"], sft_val["after"]
        lines.append(
            f"- **Validation, before -> after SFT** ({a['n']} judgements): valid verdicts "
            f"{b['valid_rate']:.2f} -> {a['valid_rate']:.2f}, accuracy {b['accuracy']:.3f} -> "
            f"{a['accuracy']:.3f}."
        )
    pre = _read_json(run_path / "grpo" / "preflight.json")
    if pre:
        varied = pre.get("varied", pre["kept"])  # older runs kept only the prompts that varied
        trained = preflight_trained_on(varied, pre["kept"])
        lines.append(
            f"- **GRPO pre-flight**: {varied} of {pre['checked']} training prompts had reward "
            f"variance in their group (share of uniform groups {pre['frac_reward_zero_std']:.2f}); "
            f"GRPO trained on {trained}."
        )
    grpo_log = _read_json(run_path / "grpo" / "train_log.json")
    if grpo_log and grpo_log.get("history"):
        rewards = [h["reward"] for h in grpo_log["history"] if "reward" in h]
        curve = ", ".join(f"{r:.2f}" for r in rewards)
        lines.append(
            f"- **GRPO**: {grpo_log.get('steps')} steps in {grpo_log.get('seconds', 0):.0f} s; "
            f"training reward per step: {curve}."
        )
    val = _read_json(run_path / "grpo" / "val_reward.json")
    if val:
        lines.append(
            f"- **Validation reward, before -> after GRPO** ({val['pairs']} pairs, both orders): "
            f"{val['before (SFT)']:.3f} -> {val['after (SFT + GRPO)']:.3f}."
        )
    diagnosis = _read_json(run_path / "eval" / "diagnosis.json") or {}
    for name, d in diagnosis.items():
        first, _, numbers = d["message"].partition("\n")
        lines.append(f"- **{name}** on unseen authors: {first.split(':')[0]}. {numbers}")
    if (run_path / FIGURES / "04_grpo_curves.png").is_file():
        lines += ["", f"![GRPO curves]({FIGURES}/04_grpo_curves.png)"]
    return [*lines, ""] if len(lines) > 2 else []


def _best_of_n_section(run_path: Path) -> list[str]:
    """Notebook 06's table, when the run has one; otherwise a line that says it was not run."""
    summary = run_path / "bon" / "summary.csv"
    if not summary.is_file():
        return ["## Personalized generation (notebook 06)", "", "Not run in this run.", ""]
    info = json.loads((run_path / "bon" / "info.json").read_text())
    if info.get("refused"):
        return [
            "## Personalized generation (notebook 06)",
            "",
            f"Not reported: notebook 05 diagnosed the final judge as `{info['refused']}`, so "
            "best-of-N picks and a policy trained on its verdicts would be artefacts of its "
            "failure (notebook 06 ran its mechanics on one opening only).",
            "",
        ]
    table = pd.read_csv(summary)

    def cell(row: pd.Series, col: str, low: str, high: str) -> str:
        if col not in row or pd.isna(row[col]):
            return "–"
        return f"{row[col]:.3f} [{row[low]:.3f}, {row[high]:.3f}]"

    out = pd.DataFrame(
        {
            "openings": table["tasks"].astype(int),
            "real text preferred by the BT RM (lower: better)": table.apply(
                cell, axis=1, args=("real preferred", "rp_low", "rp_high")
            ),
            "style distance to the author (lower: closer)": table.apply(
                cell, axis=1, args=("style distance", "sd_low", "sd_high")
            ),
        }
    )
    out.index = table["method"]
    lines = [
        "## Personalized generation (notebook 06): best-of-N",
        "",
        f"{info['tasks']} held-out openings, {info['drafts']} policy drafts each; the PersRM "
        f"made {info['comparisons']} comparisons ({info['invalid']} without a valid verdict). "
        "95% bootstrap intervals over openings.",
        "",
        out.to_markdown(),
        "",
        f"![best-of-N]({FIGURES}/06_best_of_n.png)",
        "",
    ]
    if info.get("policy_steps"):
        lines += [
            f"Policy GRPO with the PersRM as reward: {info['policy_steps']} steps in "
            f"{info['policy_seconds']:.0f} s; on held-out openings the trained policy won "
            f"{info['after_wins']:.0f} of {info['decided']:.0f} decided comparisons against "
            "the untrained one.",
            "",
        ]
    return lines
