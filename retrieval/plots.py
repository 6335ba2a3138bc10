"""The evaluation as pictures: precision bars, the per-category heat map, the confusion matrix and result
grids (query, then its top results outlined by relevance), written as PNGs next to the tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from . import metrics
from .evaluate import BASELINE_TEXT_MODEL, CATEGORY, K, KS, LEVELS, RAW_PIXELS, Evaluation, TextQuery, display_name
from .report import evaluation_text


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def write_outputs(evaluation: Evaluation, out_dir: str | Path, grid_queries: int = 6) -> list[Path]:
    """The table (evaluation.txt), the JSON, the plots and the result grids, in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "evaluation.txt", out / "evaluation.json"]
    written[0].write_text(evaluation_text(evaluation))
    written[1].write_text(json.dumps(evaluation.to_dict(), indent=2))
    written.append(_plot_precision(evaluation.image, out / "precision_at_k.png",
                                   "Image to image (leave-one-out)", evaluation.random))
    if evaluation.text.get("models"):
        written.append(_plot_precision(evaluation.text["models"], out / "text_precision_at_k.png",
                                       "Text to image", evaluation.text["random"]))
    written.append(_plot_per_category(evaluation, out / "per_category.png"))
    written.append(_plot_confusion(evaluation, out / "confusion.png"))
    samples = _grid_samples(evaluation, grid_queries)
    for name, ranked in evaluation.ranked.items():
        written.append(_plot_grid(evaluation, name, [(row, ranked[row]) for row in samples],
                                  out / f"grid_{name}.png"))
    text_samples = _text_grid_samples(evaluation.queries, grid_queries)
    for name, ranked in evaluation.text_ranked.items():
        written.append(_plot_grid(evaluation, name, [(evaluation.queries[i], ranked[i]) for i in text_samples],
                                  out / f"text_grid_{name}.png"))
    return written


def _plot_precision(results: dict, path: Path, title: str, random: dict) -> Path:
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(names) + 3), 4), sharey=True)
    width = 0.8 / len(KS)
    for ax, level in zip(axes, LEVELS):
        for j, k in enumerate(KS):
            values = [results[n][level][f"p@{k}"] or 0.0 for n in names]
            bars = ax.bar(np.arange(len(names)) + (j - (len(KS) - 1) / 2) * width, values, width, label=f"P@{k}")
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        chance = random[level].get("p@1")
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="random")
        ax.set_xticks(np.arange(len(names)), [_tick(n, results[n]) for n in names], fontsize=8)
        ax.set_ylim(0, 1.22)  # room for the legend above the bars
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_title("same category" if level == CATEGORY else "same (category, label)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("precision")
    axes[1].legend(loc="upper center", ncol=len(KS) + 1, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _tick(name: str, result: dict) -> str:
    """'tfidf\n(metadata, baseline)': the model, what it compares, and whether it is a baseline."""
    what = result.get("input") or result.get("searches") or ""
    baseline = name in (RAW_PIXELS, BASELINE_TEXT_MODEL)
    detail = ", ".join(part for part in (what, "baseline" if baseline else "") if part)
    return f"{name}\n({detail})" if detail else name


def _plot_per_category(evaluation: Evaluation, path: Path) -> Path:
    import matplotlib.pyplot as plt

    names, categories = list(evaluation.image), evaluation.categories
    fig, axes = plt.subplots(1, 2, figsize=(0.9 * len(categories) * 2 + 4, 0.55 * len(names) + 2))
    colours = plt.get_cmap("viridis").with_extremes(bad="#dddddd")  # grey: no labelled rows in that category
    for ax, level in zip(axes, LEVELS):
        grid = np.array([[_nan(evaluation.image[n]["per_category"][c][level]["p@5"]) for c in categories]
                         for n in names], dtype=float)
        ax.imshow(np.ma.masked_invalid(grid), cmap=colours, vmin=0, vmax=1, aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, "-" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if not np.isnan(value) and value <= 0.6 else "black")
        ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), [display_name(n) for n in names] if level == CATEGORY else [])
        ax.set_title(f"P@5, same {'category' if level == CATEGORY else '(category, label)'}")
    fig.suptitle("Leave-one-out P@5 per query category")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_confusion(evaluation: Evaluation, path: Path) -> Path:
    import matplotlib.pyplot as plt

    names = list(evaluation.image)
    columns = min(3, math.ceil(math.sqrt(len(names))))
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.9 * rows), squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        confusion = evaluation.image[name]["confusion"]
        shares = metrics.row_normalise(np.asarray(confusion["counts"]))
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(shares):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 0.6 else "black")
        ticks = range(len(confusion["categories"]))
        ax.set_xticks(ticks, confusion["categories"], rotation=40, ha="right", fontsize=8)
        ax.set_yticks(ticks, confusion["categories"], fontsize=8)
        ax.set_title(display_name(name), fontsize=9)
    fig.suptitle(f"Query category (rows) vs categories of its top {K} results")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _grid_samples(evaluation: Evaluation, count: int) -> list[int]:
    """One query row per category, in turn, picked with a fixed seed (the same rows for every model)."""
    rng = np.random.default_rng(0)
    categories = np.asarray(evaluation.engine.catalogue.column("category"))
    per_category = [list(rng.permutation(np.flatnonzero(categories == c))) for c in evaluation.categories]
    chosen = []
    while len(chosen) < count and any(per_category):
        for rows in per_category:
            if rows and len(chosen) < count:
                chosen.append(int(rows.pop()))
    return chosen


def _text_grid_samples(queries: list[TextQuery], count: int) -> list[int]:
    """The first query of each category, then the next ones, up to `count`."""
    order, seen = [], set()
    for i, query in enumerate(queries):
        if query.category not in seen:
            seen.add(query.category)
            order.append(i)
    order += [i for i in range(len(queries)) if i not in order]
    return order[:count]


GREEN, RED = (26, 150, 65), (215, 25, 28)


def _plot_grid(evaluation: Evaluation, name: str, samples: list, path: Path, shown: int = 5,
               tile: int = 150) -> Path:
    """One row per query: the query (image or text) then its top results, outlined green when relevant
    (same category) and red when not; a tick marks a result with the query's label too. Drawn with PIL:
    a few dozen matplotlib axes per grid would take longer than the whole evaluation."""
    from PIL import Image, ImageDraw, ImageOps

    catalogue = evaluation.engine.catalogue
    font, small = _font(13), _font(11)
    pad, border, caption, header = 8, 5, 34, 30
    cell_w, cell_h = tile + 2 * border, tile + 2 * border + caption
    width = pad + (shown + 1) * (cell_w + pad)
    canvas = Image.new("RGB", (width, header + len(samples) * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 8), f"{display_name(name)}: query, then top {shown}. Green outline = same category, "
                        f"red = other category, \u2713 = same label too.", fill="black", font=font)

    def place(column: int, line: int, picture, colour, lines: list[str]) -> None:
        x, y = pad + column * (cell_w + pad), header + line * (cell_h + pad)
        draw.rectangle([x, y, x + cell_w - 1, y + tile + 2 * border - 1], fill=colour)
        canvas.paste(picture, (x + border, y + border))
        for i, text in enumerate(lines):
            draw.text((x + 2, y + tile + 2 * border + 2 + 15 * i), _fit(draw, text, small, cell_w - 4),
                      fill="black", font=small)

    for line, (query, ranked) in enumerate(samples):
        if isinstance(query, TextQuery):
            category, labels = query.category, set(query.labels)
            panel = Image.new("RGB", (tile, tile), (238, 238, 238))
            _wrap(ImageDraw.Draw(panel), f"\u201c{query.text}\u201d", font, tile - 12)
            place(0, line, panel, (120, 120, 120),
                  ["text query: " + category, ", ".join(sorted(labels)) if labels else "(category level)"])
        else:
            record = catalogue.record(catalogue.ids[query])
            category, labels = record["category"], {record["label"]} if record["label"] else set()
            picture = ImageOps.pad(catalogue.image(catalogue.ids[query]), (tile, tile), color=0).convert("RGB")
            place(0, line, picture, (120, 120, 120), ["query: " + category, record["label"] or "(no label)"])
        for column, row in enumerate([r for r in ranked if r >= 0][:shown], start=1):
            record = catalogue.record(catalogue.ids[row])
            same_label = bool(labels) and record["category"] == category and record["label"] in labels
            picture = ImageOps.pad(catalogue.image(catalogue.ids[row]), (tile, tile), color=0).convert("RGB")
            place(column, line, picture, GREEN if record["category"] == category else RED,
                  [f"#{column} {record['category']}", (record["label"] or "(no label)")
                   + (" \u2713" if same_label else "")])
    canvas.save(path, optimize=True)
    return path


def _font(size: int):
    from PIL import ImageFont

    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size=size)


def _fit(draw, text: str, font, width: int) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "\u2026"
    return text


def _wrap(draw, text: str, font, width: int) -> None:
    lines, current = [], ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not current:
            current = trial
        else:
            lines.append(current)
            current = word
    lines.append(current)
    top = max(4, (width + 12 - 17 * len(lines)) // 2)
    for i, line in enumerate(lines[:8]):
        draw.text((6, top + 17 * i), line, fill="black", font=font)


