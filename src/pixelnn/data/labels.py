"""Sample labels from folder names ('path', 'path:N') or from a CSV file (file,label)."""

from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, DataError
from .notice import examples, warn_data

LabelSpec = str | os.PathLike | None


def assign_labels(names: list[str], labels: LabelSpec) -> list[str | None]:
    """One label per sample name ('/'-separated path relative to the source root).

    labels: None (no labels); 'path' (all folders of the name); 'path:N' (its first N folders);
    or the path of a CSV file with a header row whose first two columns are file,label.
    """
    if labels is None:
        return [None] * len(names)
    if isinstance(labels, str) and (labels == "path" or labels.startswith("path:")):
        return path_labels(names, _path_depth(labels))
    return csv_labels(names, Path(labels))


def _path_depth(spec: str) -> int | None:
    """'path' -> None (all folders), 'path:N' -> N."""
    if spec == "path":
        return None
    text = spec.split(":", 1)[1]
    if not (text.isascii() and text.isdigit()) or int(text) < 1:  # '²'.isdigit() is True
        raise ConfigError(f"labels {spec!r}: expected 'path' or 'path:N' with N a positive integer")
    return int(text)


def path_labels(names: list[str], depth: int | None = None) -> list[str | None]:
    """The first `depth` folders of each name joined with '/' (all folders if depth is None).

    Files directly in the root get None; files in fewer than `depth` folders get what they have.
    """
    result: list[str | None] = []
    shallow: list[str] = []
    for name in names:
        folders = PurePosixPath(name).parts[:-1]
        if depth is not None and len(folders) < depth:
            shallow.append(name)
        kept = folders if depth is None else folders[:depth]
        result.append("/".join(kept) if kept else None)
    if shallow:
        warn_data(
            f"{len(shallow)} of {len(names)} files are fewer than {depth} folder(s) deep, so their "
            f"'path:{depth}' label is shorter or missing: {examples(shallow)}"
        )
    return result


def read_label_csv(path: Path) -> dict[str, str]:
    """{file: label} from a CSV file with a header row; keys are '/'-separated, without './'."""
    if not path.is_file():
        raise DataError(f"{path}: label file not found (labels must be None, 'path', 'path:N' or a CSV file)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read label CSV ({exc})") from exc
    if not rows or len(rows[0]) < 2:
        raise DataError(f"{path}: label CSV needs a header row whose first two columns are file,label")
    table: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise DataError(f"{path}, line {line}: expected file,label, got {row!r}")
        key, label = _clean_key(row[0]), row[1].strip()
        if key in table and table[key] != label:
            raise DataError(f"{path}, line {line}: {key!r} has two labels, {table[key]!r} and {label!r}")
        table[key] = label
    if not table:
        raise DataError(f"{path}: label CSV has a header but no rows")
    return table


def _clean_key(text: str) -> str:
    key = text.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


def csv_labels(names: list[str], path: Path) -> list[str | None]:
    """Look each name up in the CSV, by its full relative name first, then by its basename."""
    table = read_label_csv(path)
    result: list[str | None] = []
    missing: list[str] = []
    for name in names:
        label = table.get(name, table.get(PurePosixPath(name).name))
        if label is None:
            missing.append(name)
        result.append(label or None)
    if names and len(missing) == len(names):
        raise DataError(
            f"{path}: no sample matches a file in the label CSV (e.g. sample {names[0]!r}, "
            f"CSV file {next(iter(table))!r}); the first column must hold the sample's path "
            "relative to the data folder or its file name"
        )
    if missing:
        warn_data(f"{len(missing)} of {len(names)} samples have no label in {path}: {examples(missing)}")
    return result
