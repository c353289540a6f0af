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
        ax.bar(x, sub["accuracy"], width, yerr=err, capsize=3, label=str(g) if g else None)
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
        ax.fill_between(sub[x], sub["ci_low"], sub["ci_high"], alpha=0.15)
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set_xlabel(x)
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
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    panels = (
        ("real preferred", "rp_low", "rp_high", "real text preferred over the pick\n(BT RM)"),
        ("style distance", "sd_low", "sd_high", "style distance to the author\n(lower: closer)"),
    )
    for ax, (col, low, high, title) in zip(axes, panels, strict=True):
        if col not in table:
            ax.set_axis_off()
            continue
        rows = table.dropna(subset=[col])
        values = rows[col].to_numpy(dtype=float)
        err = np.vstack([values - rows[low].to_numpy(float), rows[high].to_numpy(float) - values])
        colors = ["#4c72b0" if m == "PersRM" else "#999999" for m in rows["method"]]
        bars = ax.barh(rows["method"], values, xerr=np.clip(err, 0, None), color=colors, capsize=3)
        ax.bar_label(bars, fmt="%.2f", padding=4, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        if col == "real preferred":
            ax.axvline(0.5, color="k", lw=0.8, ls="--")
            ax.set_xlim(0, 1)
    fig.tight_layout()
    return save(fig, path)
