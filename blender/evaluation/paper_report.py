"""Table 2 / Table 3 as Markdown, JSON and PNG figures, with the paper's numbers beside ours on MixInstruct.

The paper's rows are interleaved under our matching rows ("↳ paper") and its unmatched rows follow ours, all
labelled with `paper_results()["label"]`; they are only shown when the dataset is MixInstruct, since on any
other data they answer a different question.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from blender.evaluation import paper_tables
from blender.evaluation.paper_tables import (
    METRIC_SCALES,
    METRIC_TITLES,
    available_metrics,
    metric_title,
    paper_results,
    paper_row_name,
    table2_methods,
)
from blender.evaluation.ranking import Method
from blender.files import write_bytes_atomic, write_json_atomic, write_text_atomic
from blender.records.schema import Record

PAPER_MARK = "↳ paper"


def _fmt(key: str) -> str:
    if key.startswith("rouge"):
        return "{:.3f}"
    if key.endswith("_pct") or key.startswith("ge:"):
        return "{:.1f}"
    return "{:.2f}"


def _cell(row: Mapping[str, Any], key: str, scale: float = 1.0, with_interval: bool = True) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    fmt = _fmt(key)
    text = fmt.format(value * scale)
    interval = row.get(f"{key}_ci")
    if with_interval and interval is not None:
        low, high = interval
        text += f" [{fmt.format(low * scale)}, {fmt.format(high * scale)}]"
    return text


def _paper_cell(row: Mapping[str, Any], key: str | None) -> str:
    value = None if key is None else row.get(key)
    return "–" if value is None else f"{value:.2f}"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _with_paper(
    ours: list[dict], paper_rows: list[dict], paper: Mapping | None, ours_cells, paper_cells
) -> list[list[str]]:
    """Our rows, each followed by its paper counterpart when `paper` is given, then the paper's other rows."""
    lines, shown = [], set()
    by_name = {r["method"]: r for r in paper_rows}
    for row in ours:
        lines.append(ours_cells(row))
        match = paper_row_name(row["method"], paper) if paper is not None else None
        if match in by_name and match not in shown:
            lines.append(paper_cells(by_name[match]))
            shown.add(match)
    if paper is not None:
        lines += [paper_cells(r) for r in paper_rows if r["method"] not in shown]
    return lines


def _paper_ge_keys(table: Mapping[str, Any], paper: Mapping[str, Any]) -> dict[str, str]:
    """Our "ge:<model>" columns -> the paper's ≥ columns, where the named models are the paper's."""
    named = {paper["models"][name]: key for key, name in paper["table2"]["named_models"].items()}
    return {f"ge:{m}": named[m] for m in table["named_models"] if m in named}


def render_table2(table: Mapping[str, Any], title: str, paper: Mapping[str, Any] | None = None) -> str:
    """Table 2 as Markdown; `paper` (from `paper_results()`) interleaves the published rows."""
    metrics, named = table["metrics"], table["named_models"]
    headers = [
        "Category",
        "Method",
        *(f"{metric_title(m)}↑" for m in metrics),
        f"GPT-Rank↓ ({table['oracle']})",
        *(f"≥ {m} %↑" for m in named),
        "Top-3 %↑",
        "Top-1 %↑",
    ]
    keys = [*metrics, "gpt_rank", *(f"ge:{m}" for m in named), "top3_pct", "top1_pct"]

    def ours(row: Mapping[str, Any]) -> list[str]:
        return [row["category"], row["method"], *(_cell(row, k, METRIC_SCALES.get(k, 1.0)) for k in keys)]

    paper_keys = {}
    if paper is not None:
        paper_keys = {k: k for k in ("bertscore", "bartscore", "bleurt", "gpt_rank", "top3_pct")}
        paper_keys.update(_paper_ge_keys(table, paper))

    def published(row: Mapping[str, Any]) -> list[str]:
        return [PAPER_MARK, f"*{row['method']}*", *(_paper_cell(row, paper_keys.get(k)) for k in keys)]

    lines = [f"## {title}", ""]
    lines.append(
        f"{table['n_examples']} instructions. GPT-Rank, Top-3, Top-1 and ≥ columns are judged by the oracle "
        f"`{table['oracle']}` (GPT-Rank: mean competition rank of the pick, 1 = best); ≥ counts a tie as at least "
        "as good. Reference metrics are means on the picked answer. Random is the expectation over a uniform pick. "
        "Brackets: 95% bootstrap intervals over instructions."
    )
    if paper is not None:
        lines.append("")
        lines.append(
            f"Rows marked *{PAPER_MARK}*: {paper['label']}; source: {paper['table2']['source']}. "
            "Published numbers, not computed here; BERTScore ×100 as printed, – where not printed."
        )
    paper_rows = paper["table2"]["rows"] if paper is not None else []
    lines += ["", *_table(headers, _with_paper(table["rows"], paper_rows, paper, ours, published))]
    shares = table.get("best_share_pct") or {}
    if shares:
        lines += [
            "",
            f"Share of instructions where each model is best by `{table['oracle']}` (ties count for each): "
            + ", ".join(f"{m} {v:.1f}%" for m, v in shares.items()),
        ]
    return "\n".join(lines) + "\n"


def render_table3(table: Mapping[str, Any], title: str, paper: Mapping[str, Any] | None = None) -> str:
    """Table 3 as Markdown; `paper` interleaves the published rows."""
    headers = [
        "Category",
        "Ranking method",
        "Pearson (×100)↑",
        "Spearman (×100)↑",
        "Footrule↓",
        "Spearman within instruction (×100)↑",
    ]
    scales = {"pearson": 100.0, "spearman": 100.0, "footrule": 1.0, "spearman_within": 100.0}

    def ours(row: Mapping[str, Any]) -> list[str]:
        name = (
            METRIC_TITLES.get(row["method"], row["method"])
            if row["category"] == "Reference metrics"
            else row["method"]
        )
        return [row["category"], name, *(_cell(row, k, s, with_interval=False) for k, s in scales.items())]

    def published(row: Mapping[str, Any]) -> list[str]:
        keys = ("pearson", "spearman", "footrule", None)
        return [PAPER_MARK, f"*{row['method']}*", *(_paper_cell(row, k) for k in keys)]

    lines = [f"## {title}", ""]
    lines.append(
        f"{table['n_examples']} instructions; oracle ranking by `{table['oracle']}`. Pearson and Spearman per "
        "candidate column across instructions, averaged over columns; footrule Σ|rank − oracle rank| per "
        "instruction, averaged (the paper's cor_eval.py). The last column correlates the scores inside each "
        "instruction, averaged over instructions (all-tied instructions left out). Random: mean of "
        f"{next((r.get('draws') for r in table['rows'] if r['method'] == 'Random'), 0)} draws of random scores."
    )
    if paper is not None:
        lines.append("")
        lines.append(
            f"Rows marked *{PAPER_MARK}*: {paper['label']}; source: {paper['table3']['source']}. "
            "Published numbers, not computed here."
        )
    paper_rows = paper["table3"]["rows"] if paper is not None else []
    lines += ["", *_table(headers, _with_paper(table["rows"], paper_rows, paper, ours, published))]
    return "\n".join(lines) + "\n"


def _finite(value: Any) -> bool:
    return value is not None and not math.isnan(value)


def _save_png(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return write_bytes_atomic(path, buffer.getvalue())


def _new_figure(width: float, height: float) -> Any:
    # The Agg canvas is chosen here, not at import: no pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def plot_best_share(table2: Mapping[str, Any], path: str | os.PathLike, paper: Mapping | None = None) -> Path:
    """Horizontal bars: % of instructions where each model is best (Fig. 1 of the paper, as bars)."""
    shares = table2["best_share_pct"]
    models = list(shares)[::-1]  # best on top
    figure = _new_figure(7, 0.35 * len(models) + 1.2)
    axes = figure.add_subplot()
    positions = list(range(len(models)))
    if paper is not None:
        by_model = {
            model: paper["figure1"]["share_best_pct"].get(name) for name, model in paper["models"].items()
        }
        published = [by_model.get(m) or 0.0 for m in models]
        axes.barh([p - 0.2 for p in positions], [shares[m] for m in models], height=0.4, label="ours")
        axes.barh(
            [p + 0.2 for p in positions], published, height=0.4, label=paper["label"], hatch="//", alpha=0.6
        )
        axes.legend(fontsize=7, loc="lower right")
    else:
        axes.barh(positions, [shares[m] for m in models])
    axes.set_yticks(positions, models, fontsize=8)
    axes.set_xlabel(f"% of instructions where the model is best by {table2['oracle']} (ties count for each)")
    axes.set_title(f"Best answer per instruction ({table2['n_examples']} instructions)", fontsize=10)
    return _save_png(figure, Path(path))


def plot_correlations(
    table3: Mapping[str, Any], path: str | os.PathLike, paper: Mapping | None = None
) -> Path:
    """Grouped bars: Pearson and Spearman (×100) of each metric and ranker against the oracle ranking."""
    rows = table3["rows"]
    labels = [
        METRIC_TITLES.get(r["method"], r["method"]) if r["category"] == "Reference metrics" else r["method"]
        for r in rows
    ]
    figure = _new_figure(max(6.0, 0.8 * len(rows) + 2), 4)
    axes = figure.add_subplot()
    x = list(range(len(rows)))
    series = [
        (f"{key} (ours)", [100 * r[key] if _finite(r.get(key)) else 0.0 for r in rows], {})
        for key in ("pearson", "spearman")
    ]
    if paper is not None:
        by_name = {r["method"]: r for r in paper["table3"]["rows"]}
        matched = [by_name.get(paper_row_name(r["method"], paper) or "") for r in rows]
        series += [
            (
                f"{key} ({paper['label']})",
                [m[key] if m else 0.0 for m in matched],
                {"hatch": "//", "alpha": 0.6},
            )
            for key in ("pearson", "spearman")
        ]
    width = 0.8 / len(series)
    for k, (label, values, style) in enumerate(series):
        # Bars of one row side by side, centred on its tick.
        axes.bar(
            [i + (k - (len(series) - 1) / 2) * width for i in x], values, width=width, label=label, **style
        )
    axes.axhline(0, color="black", linewidth=0.5)
    axes.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel(f"correlation with {table3['oracle']} ranking (×100)")
    axes.set_title(f"Agreement with the oracle ranking ({table3['n_examples']} instructions)", fontsize=10)
    axes.legend(fontsize=7)
    return _save_png(figure, Path(path))


def write_paper_tables(
    directory: str | os.PathLike,
    stem: str,
    title: str,
    table2: Mapping[str, Any] | None = None,
    table3: Mapping[str, Any] | None = None,
    dataset: str | None = None,
) -> list[Path]:
    """Write `table2_<stem>.{md,json}`, `table3_<stem>.{md,json}` and their figures, each atomically.

    Args:
        directory: where to write.
        stem: e.g. "alpaca_blend_modern_val".
        title: what the tables describe, e.g. "alpaca_blend_modern val: PairRanker (ckpt)".
        table2: from `paper_tables.table2` (None to skip).
        table3: from `paper_tables.table3` (None to skip).
        dataset: the data config's name; "mixinstruct" adds the paper's numbers, labelled.
    Returns:
        The files written.
    """
    directory = Path(directory)
    paper = paper_results() if dataset == "mixinstruct" else None
    published = {"label": paper["label"], "source": paper["source"]} if paper is not None else None
    written = []
    if table2 is not None:
        written.append(
            write_text_atomic(
                directory / f"table2_{stem}.md", render_table2(table2, f"Table 2: {title}", paper)
            )
        )
        payload = {
            **table2,
            "dataset": dataset,
            **({"paper": {**published, **paper["table2"]}} if paper else {}),
        }
        written.append(write_json_atomic(directory / f"table2_{stem}.json", payload))
        written.append(plot_best_share(table2, directory / f"best_share_{stem}.png", paper))
    if table3 is not None:
        written.append(
            write_text_atomic(
                directory / f"table3_{stem}.md", render_table3(table3, f"Table 3: {title}", paper)
            )
        )
        payload = {
            **table3,
            "dataset": dataset,
            **({"paper": {**published, **paper["table3"]}} if paper else {}),
        }
        written.append(write_json_atomic(directory / f"table3_{stem}.json", payload))
        written.append(plot_correlations(table3, directory / f"correlations_{stem}.png", paper))
    return written


def report_paper_tables(
    records: Sequence[Record],
    oracle: str,
    named_models: Sequence[str],
    directory: str | os.PathLike,
    stem: str,
    title: str,
    dataset: str | None = None,
    rankers: Sequence[Method] = (),
    metric_keys: Sequence[str] | None = None,
    extra_outputs: Mapping[str, str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compute Table 2 and Table 3 on `records` and write them (Markdown, JSON, PNG) into `directory`.

    Args:
        records: the evaluation split, its candidates scored by reference metrics (`make score`).
        oracle: the judge oracle (a score name or "cmp_results").
        named_models: models of the "≥ model %" columns.
        directory: where to write.
        stem: file-name stem, e.g. "alpaca_blend_modern_val".
        title: what the tables describe.
        dataset: the data config's name ("mixinstruct" shows the paper's numbers).
        rankers: ranker rows (full scores), after the baselines.
        metric_keys: reference metrics to report; None: every known one that all candidates carry.
        extra_outputs: {row name: record field} of scored extra answers (e.g. the fuser's).
        n_boot: bootstrap resamples for Table 2.
        seed: bootstrap seed.
    Returns:
        {"metrics": [...], "table2": ..., "table3": ..., "files": [paths]}.
    """
    keys = list(metric_keys) if metric_keys is not None else list(METRIC_TITLES)
    metrics = available_metrics(records, keys)
    methods = [*table2_methods(records, oracle, metrics), *rankers]
    second = paper_tables.table2(records, oracle, methods, metrics, named_models, n_boot, seed, extra_outputs)
    third = paper_tables.table3(
        records, oracle, metrics, [m for m in methods if m.name == "Longest"] + list(rankers), seed=seed
    )
    files = write_paper_tables(directory, stem, title, second, third, dataset)
    return {"metrics": metrics, "table2": second, "table3": third, "files": [str(f) for f in files]}


__all__ = [
    "report_paper_tables",
    "PAPER_MARK",
    "plot_best_share",
    "plot_correlations",
    "render_table2",
    "render_table3",
    "write_paper_tables",
]
