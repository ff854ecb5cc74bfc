"""Render the ranking table as Markdown, JSON and a terminal table."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from blender.files import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

COLUMNS = (
    ("top1_oracle", "Top-1 {oracle}", "{:.3f}"),
    ("gpt_rank", "GPT-Rank↓", "{:.2f}"),
    ("top1_pct", "Top-1 %", "{:.1f}"),
    ("top3_pct", "Top-3 %", "{:.1f}"),
    ("ge_best_pct", "≥ best %", "{:.1f}"),
    ("pearson", "Pearson", "{:.3f}"),
    ("spearman", "Spearman", "{:.3f}"),
    ("footrule", "Footrule↓", "{:.2f}"),
    ("spearman_within", "Spearman (within)", "{:.3f}"),
    ("forward_passes", "Passes/instr.", "{:.0f}"),
    ("seconds_per_instruction", "s/instr.", "{:.2f}"),
)
WITH_INTERVAL = ("top1_oracle", "gpt_rank", "ge_best_pct")


def _cell(row: dict, key: str, fmt: str, with_interval: bool) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = fmt.format(value)
    if with_interval and f"{key}_ci" in row:
        low, high = row[f"{key}_ci"]
        text += f" [{fmt.format(low)}, {fmt.format(high)}]"
    return text


def _headers(table: dict) -> list[str]:
    return ["Method", *(title.format(oracle=table["oracle"]) for _, title, _ in COLUMNS)]


def _cells(table: dict, row: dict) -> list[str]:
    return [row["method"], *(_cell(row, key, fmt, key in WITH_INTERVAL) for key, _, fmt in COLUMNS)]


def render_markdown(table: dict, title: str) -> str:
    """The table as GitHub Markdown, with the settings it came from and the paired differences."""
    lines = [f"## {title}", ""]
    lines.append(
        f"Oracle: `{table['oracle']}`; {table['n_examples']} instructions; best single model (chosen on train): "
        f"`{table['best_model']}`. Brackets: 95% bootstrap intervals over instructions."
    )
    lines += ["", "| " + " | ".join(_headers(table)) + " |", "|" + "---|" * len(_headers(table))]
    lines += ["| " + " | ".join(_cells(table, row)) + " |" for row in table["rows"]]
    if table["differences"]:
        lines += ["", "Paired differences in the mean oracle score of the pick (95% bootstrap interval):", ""]
        for diff in table["differences"]:
            low, high = diff["ci"]
            verdict = "above zero" if low > 0 else ("below zero" if high < 0 else "includes zero")
            lines.append(
                f"- {diff['method']} − {diff['versus']}: {diff['top1_oracle_diff']:+.3f} [{low:+.3f}, {high:+.3f}] ({verdict})"
            )
    lines += _picks_markdown(table)
    return "\n".join(lines) + "\n"


def _picks_markdown(table: dict) -> list[str]:
    """Whose answer each choosing row picks, models left to right from best to worst on this split."""
    rows = [row for row in table["rows"] if row.get("picks_by_model")]
    means = table.get("model_means")
    if not rows or not means:
        return []
    lines = [
        "",
        f"Whose answer each method picks (of {table['n_examples']}; models by their mean "
        f"{table['oracle']} here, best first):",
        "",
    ]
    lines.append("| Method | " + " | ".join(f"{m} ({v:.3f})" for m, v in means.items()) + " |")
    lines.append("|" + "---|" * (len(means) + 1))
    for row in rows:
        counts = row["picks_by_model"]
        lines.append(f"| {row['method']} | " + " | ".join(str(counts.get(m, 0)) for m in means) + " |")
    return lines


def print_table(table: dict, title: str, console: Console | None = None) -> None:
    """Draw the table in the terminal."""
    console = console or Console(width=220)
    rich_table = Table(title=title)
    for header in _headers(table):
        rich_table.add_column(header, overflow="fold")
    for row in table["rows"]:
        rich_table.add_row(*_cells(table, row))
    console.print(rich_table)
    for diff in table["differences"]:
        low, high = diff["ci"]
        console.print(
            f"{diff['method']} − {diff['versus']}: {diff['top1_oracle_diff']:+.3f} [{low:+.3f}, {high:+.3f}]"
        )
    for row in table["rows"]:
        if row.get("picks_by_model") and row.get("forward_passes") is not None:
            most = sorted(row["picks_by_model"].items(), key=lambda item: -item[1])[:5]
            console.print(f"{row['method']} picks: " + ", ".join(f"{m} {n}" for m, n in most))


def write_report(table: dict, directory: str | os.PathLike, stem: str, title: str) -> tuple[Path, Path]:
    """Write `<stem>.md` and `<stem>.json` into `directory`, each atomically."""
    directory = Path(directory)
    markdown = write_text_atomic(directory / f"{stem}.md", render_markdown(table, title))
    data = write_json_atomic(directory / f"{stem}.json", table)
    return markdown, data
