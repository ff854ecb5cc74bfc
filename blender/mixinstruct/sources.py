"""Loaders for MixInstruct's four instruction sets, as LLM-Blender's `get_mixinstruct.py` reads them.

Each loader reads either a local file in the source's published format or a hub dataset through
`datasets.load_dataset`, and returns plain dicts `{"id", "instruction", "input", "output", "source"}`.
IDs follow the original script (PAPER.md §5), so records can be matched against the released MixInstruct:

| source        | published file / hub id                                      | id                               |
|---------------|--------------------------------------------------------------|----------------------------------|
| `alpaca_gpt4` | `alpaca_gpt4_data.json` (GPT-4-LLM repo)                     | `itwgpt4/<n>`                    |
| `dolly`       | `databricks-dolly-15k.jsonl`, `HuggingFaceH4/databricks_dolly_15k` | `dolly_15k/<category>/<n>` |
| `gpt4all`     | `nomic-ai/gpt4all_prompt_generations` (unified_chip2 rows)   | `unified_chip2/<n>`, `laion/unified_chip2/<n>` |
| `sharegpt`    | `ShareGPT_V3_unfiltered_cleaned_split_no_imsorry.json`       | `sharegpt/<conversation id>`     |

`<n>` counts rows in file order within the id prefix, starting at 0, as the original does. The ban-word
filter that the original applies to ShareGPT while loading lives in `blender.mixinstruct.mix`, so that its count
shows up in the data card.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blender.files import iter_jsonl

log = logging.getLogger(__name__)

# The gpt4all rows that MixInstruct keeps (`get_mixinstruct.py`).
GPT4ALL_KEPT_SOURCES = ("laion/unified_chip2", "unified_chip2")


class SourceFormatError(ValueError):
    """A source row that does not have the published format; the message names where and what."""


@dataclass
class SourceSpec:
    """Where one source's rows come from: a local file, or a hub dataset read by `datasets`.

    Attributes:
        name: the loader, a key of `LOADERS` (`alpaca_gpt4`, `dolly`, `gpt4all`, `sharegpt`).
        path: a local file in the published format (`.json`, `.jsonl`, either `.gz`; other suffixes such
            as `.parquet` go through `datasets`). Takes precedence over `hub_id` when set.
        hub_id: a dataset on the hub (or a `datasets` builder such as "json"), loaded with
            `datasets.load_dataset(hub_id, split=split, data_files=data_files)`.
        split: the split to read from the hub.
        data_files: the file(s) inside the hub repository, for repos that hold several.
        cache_dir: where `datasets` caches downloads; None for its default.
    """

    name: str
    path: str | None = None
    hub_id: str | None = None
    split: str = "train"
    data_files: str | list[str] | None = None
    cache_dir: str | None = None


def _read_json_array(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a file holding one JSON array of objects, located as `path:row i` (0-based)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise SourceFormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    if not isinstance(data, list):
        raise SourceFormatError(f"{path}: expected a JSON array of rows, got {type(data).__name__}")
    for i, row in enumerate(data):
        yield f"{path}:row {i}", row


def _read_local(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a local file with where each came from (`path:line` for JSON lines, `path:row i` else)."""
    if not path.exists():
        raise FileNotFoundError(f"source file {path} does not exist")
    suffixes = [s for s in path.suffixes if s != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    if kind == ".jsonl":
        try:
            for line_no, row in iter_jsonl(path):
                yield f"{path}:{line_no}", row
        except ValueError as e:
            raise SourceFormatError(str(e)) from e
    elif kind == ".json":
        yield from _read_json_array(path)
    else:
        # Parquet, CSV, ...: whatever `datasets` has a builder for.
        yield from _read_datasets(kind.lstrip("."), split="train", data_files=str(path), cache_dir=None)


def _read_datasets(
    hub_id: str, split: str, data_files: str | list[str] | None, cache_dir: str | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a hub dataset (or a `datasets` builder over files), located as `hub_id[split] row i`."""
    # Imported here: `datasets` is slow to import and only this path needs it.
    import datasets

    ds = datasets.load_dataset(hub_id, split=split, data_files=data_files, cache_dir=cache_dir)
    where = f"{hub_id}[{split}]" + (f" ({data_files})" if data_files else "")
    for i, row in enumerate(ds):
        yield f"{where} row {i}", row


def iter_rows(spec: SourceSpec) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a source with where each came from, from its local file or from the hub.

    Args:
        spec: the source.
    Returns:
        An iterator of (location for error messages, row dict).
    """
    if spec.path:
        yield from _read_local(Path(spec.path))
    elif spec.hub_id:
        yield from _read_datasets(spec.hub_id, spec.split, spec.data_files, spec.cache_dir)
    else:
        raise ValueError(f"source {spec.name!r} has neither a local path nor a hub id")


def _field(row: dict[str, Any], where: str, *names: str, allow_none: bool = False) -> str:
    """The first of `names` present in `row` as a string; a clear error otherwise."""
    if not isinstance(row, dict):
        raise SourceFormatError(f"{where}: expected an object, got {type(row).__name__}")
    for name in names:
        if name in row:
            value = row[name]
            if value is None and allow_none:
                return ""
            if not isinstance(value, str):
                raise SourceFormatError(
                    f"{where}: field {name!r} should be a string, got {type(value).__name__}"
                )
            return value
    raise SourceFormatError(f"{where}: missing field {' or '.join(repr(n) for n in names)}")


def _record(id_: str, instruction: str, input_: str, output: str, source: str) -> dict[str, str]:
    return {"id": id_, "instruction": instruction, "input": input_, "output": output, "source": source}


def load_alpaca_gpt4(spec: SourceSpec) -> list[dict[str, str]]:
    """Alpaca-GPT4 (`alpaca_gpt4_data.json`: a JSON array of instruction / input / output).

    Args:
        spec: where the rows are.
    Returns:
        Records with ids `itwgpt4/<n>` in file order.
    """
    records = []
    for n, (where, row) in enumerate(iter_rows(spec)):
        records.append(
            _record(
                f"itwgpt4/{n}",
                _field(row, where, "instruction"),
                _field(row, where, "input", allow_none=True),
                _field(row, where, "output"),
                "alpaca_gpt4",
            )
        )
    return records


def load_dolly(spec: SourceSpec) -> list[dict[str, str]]:
    """Dolly-15K (`databricks-dolly-15k.jsonl`: instruction / context / response / category).

    The HuggingFaceH4 copy that the original script loads names the fields input / output; both
    spellings are read.

    Args:
        spec: where the rows are.
    Returns:
        Records with ids `dolly_15k/<category>/<n>`, n counting within the category in file order.
    """
    records = []
    per_category: dict[str, int] = {}
    for where, row in iter_rows(spec):
        category = _field(row, where, "category")
        prefix = f"dolly_15k/{category}"
        n = per_category.get(prefix, 0)
        per_category[prefix] = n + 1
        records.append(
            _record(
                f"{prefix}/{n}",
                _field(row, where, "instruction"),
                _field(row, where, "context", "input", allow_none=True),
                _field(row, where, "response", "output"),
                "dolly",
            )
        )
    return records


def load_gpt4all(
    spec: SourceSpec, kept_sources: tuple[str, ...] = GPT4ALL_KEPT_SOURCES
) -> list[dict[str, str]]:
    """GPT4All-LAION: the unified_chip2 rows of `nomic-ai/gpt4all_prompt_generations` (prompt / response / source).

    Args:
        spec: where the rows are.
        kept_sources: the `source` values kept; the others (stackoverflow, ...) are skipped.
    Returns:
        Records with ids `<source>/<n>` (e.g. `unified_chip2/17`), n counting within the source value;
        the prompt becomes `input` and `instruction` is empty, as in the original.
    """
    records = []
    per_source: dict[str, int] = {}
    for where, row in iter_rows(spec):
        source = _field(row, where, "source")
        if source not in kept_sources:
            continue
        n = per_source.get(source, 0)
        per_source[source] = n + 1
        records.append(
            _record(
                f"{source}/{n}", "", _field(row, where, "prompt"), _field(row, where, "response"), "gpt4all"
            )
        )
    return records


def _sharegpt_turns(where: str, row: dict[str, Any]) -> list[tuple[str, str]]:
    """(speaker, text) turns of a ShareGPT conversation, checked for shape."""
    conversations = row.get("conversations") if isinstance(row, dict) else None
    if not isinstance(conversations, list):
        raise SourceFormatError(f"{where}: missing list field 'conversations'")
    turns = []
    # Only the opening three turns are used; later turns are not checked, so one odd turn deep in a
    # long conversation does not stop a 90k-conversation build.
    for t, turn in enumerate(conversations[:3]):
        turn_where = f"{where} turn {t}"
        turns.append((_field(turn, turn_where, "from"), _field(turn, turn_where, "value")))
    return turns


def load_sharegpt(spec: SourceSpec) -> list[dict[str, str]]:
    """ShareGPT (a JSON array of `{"id", "conversations": [{"from", "value"}, ...]}`).

    As the original: the first human turn is the input and the next gpt turn the output. When the
    conversation opens with a gpt or system turn (ShareGPT V3 was split to fit 2048 tokens, so a piece
    can start mid-conversation), that turn becomes the instruction. Other shapes are skipped.

    Args:
        spec: where the rows are.
    Returns:
        Records with ids `sharegpt/<conversation id>`.
    """
    records = []
    n_skipped = 0
    for where, row in iter_rows(spec):
        turns = _sharegpt_turns(where, row)
        conv_id = row.get("id")
        if conv_id is None:
            raise SourceFormatError(f"{where}: missing field 'id'")
        speakers = [speaker for speaker, _ in turns]
        if speakers[:2] == ["human", "gpt"]:
            instruction, input_, output = "", turns[0][1], turns[1][1]
        elif len(turns) >= 3 and speakers[0] in ("gpt", "system") and speakers[1:3] == ["human", "gpt"]:
            instruction, input_, output = turns[0][1], turns[1][1], turns[2][1]
        else:
            n_skipped += 1
            continue
        records.append(_record(f"sharegpt/{conv_id}", instruction, input_, output, "sharegpt"))
    if n_skipped:
        log.info("sharegpt: skipped %d conversations without a human -> gpt opening", n_skipped)
    return records


LOADERS: dict[str, Callable[[SourceSpec], list[dict[str, str]]]] = {
    "alpaca_gpt4": load_alpaca_gpt4,
    "dolly": load_dolly,
    "gpt4all": load_gpt4all,
    "sharegpt": load_sharegpt,
}


def load_source(spec: SourceSpec) -> list[dict[str, str]]:
    """Load one source with the loader its name picks.

    Args:
        spec: the source; `spec.name` is a key of `LOADERS`.
    Returns:
        Records `{"id", "instruction", "input", "output", "source"}` in file order.
    """
    if spec.name not in LOADERS:
        raise ValueError(f"unknown source {spec.name!r}; choose one of {sorted(LOADERS)}")
    records = LOADERS[spec.name](spec)
    log.info("%s: %d records from %s", spec.name, len(records), spec.path or spec.hub_id)
    return records
