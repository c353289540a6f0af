"""Figures for the notebooks: each returns a matplotlib Figure and can save it beside the run.

Kept in the package so that the notebooks show one line per figure, and so that a figure in the
results page is drawn by the same code as in the notebook.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

#: The handful of personal factors a reader can interpret at a glance.
KEY_FACTORS: dict[str, str] = {
    "mean_sentence_len": "words per sentence",
    "mean_word_len": "letters per word",
    "ttr_150": "vocabulary richness (TTR, first 150 words)",
    "comma_per100": "commas per 100 words",
    "quote_per100": "quotation marks per 100 words",
    "number_per100": "numbers per 100 words",
    "exclamation_per100": "exclamation marks per 100 words",
    "semicolon_per100": "semicolons per 100 words",
}


#: Below this many pairs a bootstrap interval is too unstable to draw (the results page says
#: "too few for an interval" at the same threshold).
MIN_PAIRS_FOR_INTERVAL = 10

#: What notebook 04 plots from TRL 1.14's GRPO log, with a readable axis label. The two kinds of
#: "clipping" are kept apart: ``completions/clipped_ratio`` is truncation at
#: ``max_completion_length``; ``clip_ratio/region_mean`` is PPO's ratio clipping.
GRPO_PANELS: dict[str, str] = {
    "reward": "mean total reward",
    "reward_std": "reward std within groups",
    "frac_reward_zero_std": "share of groups with no reward spread",
    "completions/mean_length": "completion length (tokens)",
    "completions/clipped_ratio": "share cut at max_completion_length",
    "clip_ratio/region_mean": "share of tokens PPO-clipped",
    "kl": "KL to the reference",
}


def grpo_curves(history: pd.DataFrame, path: Path | None = None) -> plt.Figure:
    """One panel per logged GRPO metric of :data:`GRPO_PANELS`, against the integer step.

    A metric that is not in the log gets no panel (TRL logs ``kl`` only when ``beta`` > 0); one
    that is zero at every step keeps its panel with a note saying so, because "always zero" is
    the reading (PPO clipping with one update per batch), not a missing curve.
    """
    present = [m for m in GRPO_PANELS if m in history and history[m].notna().any()]
    cols = min(3, max(1, len(present)))
    rows = -(-len(present) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (ax, metric) in enumerate(zip(axes.ravel(), present, strict=False)):
        data = history[["step", metric]].dropna()
        ax.plot(data["step"], data[metric], marker="o", ms=3, color=colors[i % len(colors)])
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(GRPO_PANELS[metric], fontsize=8)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        if (data[metric] == 0).all():
            ax.text(0.5, 0.75, "0 at every step", transform=ax.transAxes, ha="center", va="center")
    for ax in axes.ravel()[len(present) :]:
        fig.delaxes(ax)
    fig.tight_layout()
    return save(fig, path)


def save(fig: plt.Figure, path: Path | None) -> plt.Figure:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def factor_bars(
    table: pd.DataFrame,
    factors: Mapping[str, str] | None = None,
    highlight: str | None = None,
    max_authors: int = 12,
    path: Path | None = None,
) -> plt.Figure:
    """One small panel per factor: each author's texts as dots, their mean as a bar.

    Dots, not only means: the spread inside an author is what tells a reader whether a factor
    separates people or just varies from text to text.
    """
    factors = dict(factors or KEY_FACTORS)
    factors = {k: v for k, v in factors.items() if k in table.columns}
    authors = sorted(table["author_id"].unique())
    if highlight in authors:
        authors = [highlight, *[a for a in authors if a != highlight][: max_authors - 1]]
    else:
        authors = authors[:max_authors]
    cols = 4
    rows = int(np.ceil(len(factors) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 0.32 * len(authors) * rows + 1.5))
    for ax, (factor, label) in zip(np.ravel(axes), factors.items(), strict=False):
        for y, author in enumerate(authors):
            values = table.loc[table["author_id"] == author, factor].to_numpy()
            color = "tab:red" if author == highlight else "tab:blue"
            ax.barh(y, values.mean(), color=color, alpha=0.25)
            ax.plot(values, np.full(len(values), y), "o", ms=3, color=color)
        ax.set_yticks(range(len(authors)))
        ax.set_yticklabels(authors if ax in np.ravel(axes)[::cols] else [], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(label, fontsize=9)
    for ax in np.ravel(axes)[len(factors) :]:
        ax.axis("off")
    fig.suptitle("Personal factors: each dot is one text, each bar an author's mean", y=1.0)
    fig.tight_layout()
    return save(fig, path)


def style_map(
    table: pd.DataFrame, features: Sequence[str], highlight: str | None = None,
    max_authors: int = 10, path: Path | None = None,
) -> plt.Figure:  # fmt: skip
    """Every text as a point on the first two principal components of its z-scored features.

    If texts by one author gather together, their personal factors are measurable, and a model
    can in principle learn them; if everything overlaps, no judge will do well.
    """
    authors = sorted(table["author_id"].unique())
    keep = ([highlight] if highlight in authors else []) + [a for a in authors if a != highlight][
        : max_authors - (1 if highlight in authors else 0)
    ]
    sub = table[table["author_id"].isin(keep)]
    x = sub[list(features)].to_numpy(dtype=float)
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    u, s, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
    coords = u[:, :2] * s[:2]
    explained = (s[:2] ** 2) / (s**2).sum()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for i, author in enumerate(keep):
        mask = (sub["author_id"] == author).to_numpy()
        style = dict(marker="*", s=160, color="red", edgecolor="k") if author == highlight else {
            "s": 30, "color": plt.cm.tab10(i % 10)}  # fmt: skip
        ax.scatter(coords[mask, 0], coords[mask, 1], label=author, alpha=0.8, **style)
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
    ax.set_title("Style map: one point per text (PCA of stylometric features)")
    ax.legend(fontsize=7, loc="best", ncol=2)
    fig.tight_layout()
    return save(fig, path)


def counts_bars(
    counts: pd.DataFrame, title: str, xlabel: str = "", path: Path | None = None
) -> plt.Figure:
    """Grouped bars of a small count table (rows: groups on the x axis, columns: series)."""
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(counts)), 4))
    counts.plot.bar(ax=ax, rot=0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    for container in ax.containers:
        ax.bar_label(container, fontsize=7)
    fig.tight_layout()
    return save(fig, path)


def accuracy_bars(
    table: pd.DataFrame, group: str | None, title: str, path: Path | None = None
) -> plt.Figure:
    """Accuracy per model (and per ``group``), with bootstrap 95% intervals and the 50% line.

    ``table`` has columns model, accuracy, ci_low, ci_high (and ``group``), as
    :func:`persrm_utils.evaluate.metrics.accuracy_table` returns them.
    """
    models = list(dict.fromkeys(table["model"]))
    groups = list(dict.fromkeys(table[group])) if group else [None]
    width = 0.8 / max(1, len(groups))
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(models) * max(1, len(groups)) ** 0.5), 4.2))
    for j, g in enumerate(groups):
        sub = table if g is None else table[table[group] == g]
        sub = sub.set_index("model").reindex(models)
        x = np.arange(len(models)) + (j - (len(groups) - 1) / 2) * width
        err = np.vstack([sub["accuracy"] - sub["ci_low"], sub["ci_high"] - sub["accuracy"]])
        if "n_pairs" in sub:  # no interval under MIN_PAIRS_FOR_INTERVAL pairs: it would mislead
            err[:, (sub["n_pairs"].fillna(0) < MIN_PAIRS_FOR_INTERVAL).to_numpy()] = 0.0
        ax.bar(
            x,
            sub["accuracy"],
            width,
            yerr=np.nan_to_num(err),
            capsize=3,
            label=str(g) if g else None,
        )
    ax.axhline(0.5, color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(np.arange(len(models)))
    ax.set_xticklabels(models, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (both A/B orders)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=min(4, len(groups) + 1))
    fig.tight_layout()
    return save(fig, path)


def accuracy_vs(table: pd.DataFrame, x: str, title: str, path: Path | None = None) -> plt.Figure:
    """Accuracy against a numeric column (e.g. k exemplars), one line per model, with bands."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for model, sub in table.groupby("model", sort=False):
        sub = sub.sort_values(x)
        ax.plot(sub[x], sub["accuracy"], marker="o", label=model)
        wide_enough = (
            sub["n_pairs"].fillna(0) >= MIN_PAIRS_FOR_INTERVAL
            if "n_pairs" in sub
            else pd.Series(True, index=sub.index)
        )
        ax.fill_between(
            sub[x], sub["ci_low"], sub["ci_high"], where=wide_enough.to_numpy(), alpha=0.15
        )
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set_xlabel(x)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylabel("accuracy (both A/B orders)")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def position_bias_bars(table: pd.DataFrame, path: Path | None = None) -> plt.Figure:
    """Share of valid verdicts saying "A" per model: 0.5 is unbiased."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(table["model"], table["position_bias"].fillna(0.0), color="tab:purple")
    ax.axhline(0.5, color="grey", ls="--", lw=1, label="unbiased")
    ax.set_ylim(0, 1.0)
    ax.set_ylabel('share of verdicts "A"')
    ax.set_title("Position bias")
    ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def best_of_n_bars(table: pd.DataFrame, path: Path | None = None) -> plt.Figure:
    """Two referees' views of each way of picking a draft (lower is better on both panels).

    ``table`` is :func:`persrm_utils.use.best_of_n.summary_table`: left, how often the reward model
    still prefers the author's real text over the pick; right, the pick's style distance to the
    author, with the real text's own distance as the floor.
    """
    panels = [
        panel
        for panel in (
            ("real preferred", "rp_low", "rp_high", "real text preferred over the pick\n(BT RM)"),
            (
                "style distance",
                "sd_low",
                "sd_high",
                "style distance to the author\n(lower: closer)",
            ),
        )
        if panel[0] in table and table[panel[0]].notna().any()
    ]
    # A referee that did not run (no Bradley-Terry RM) gets no panel: an empty one reads as a
    # result of zero.
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.5 * max(1, len(panels)), 3.6))
    for ax, (col, low, high, title) in zip(np.atleast_1d(axes), panels, strict=False):
        rows = table.dropna(subset=[col])
        values = rows[col].to_numpy(dtype=float)
        err = np.vstack([values - rows[low].to_numpy(float), rows[high].to_numpy(float) - values])
        colors = ["#4c72b0" if m == "PersRM" else "#999999" for m in rows["method"]]
        bars = ax.barh(rows["method"], values, xerr=np.clip(err, 0, None), color=colors, capsize=3)
        ax.bar_label(bars, fmt="%.2f", padding=4, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("share of openings" if col == "real preferred" else "style distance")
        if col == "real preferred":
            ax.axvline(0.5, color="k", lw=0.8, ls="--")
            ax.set_xlim(0, 1)
    fig.tight_layout()
    return save(fig, path)
