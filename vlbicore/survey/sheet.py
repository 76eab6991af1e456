"""The epoch sheet: a campaign's epochs as a TSV or CSV table (one row per uvfits file) instead of YAML.

A campaign config names its sheet with ``epochs: config/epochs.tsv`` (Snakemake-catalog style; the
row schema is ``vlbicore/schemas/epochs.schema.yaml``, linked from ``workflow/schemas/``). Every cell is
read as text and nothing is guessed: ids and names that pandas would otherwise parse ("nan", "NA",
"null", "1e5", "2017-04-05") stay the strings they are. Empty cells of optional columns count as absent.
Every problem is one line naming the sheet, its line and the column.
"""
from __future__ import annotations

import pathlib
from typing import Iterable

import pandas as pd
import yaml

from vlbicore.errors import VlbiError

SCHEMA_PATH = pathlib.Path(__file__).resolve().parents[1] / "schemas" / "epochs.schema.yaml"
COLUMNS = ("id", "uvfits", "source", "date", "band", "pipeline", "notes")
SEPARATORS = {".tsv": "\t", ".csv": ","}


def is_sheet(epochs) -> bool:
    """True when a config's ``epochs`` value names a sheet file rather than listing the epochs."""
    return isinstance(epochs, (str, pathlib.Path))


def _separator(path: pathlib.Path) -> str:
    try:
        return SEPARATORS[path.suffix.lower()]
    except KeyError:
        raise VlbiError(f"{path}: an epoch sheet is a .tsv or .csv file; rename it or convert it") from None


def read_sheet_frame(path) -> pd.DataFrame:
    """The sheet as a DataFrame of strings (empty optional cells: None), rows in file order.

    Only unreadable files raise here; what the rows say is checked by :func:`sheet_problems`.
    """
    path = pathlib.Path(path)
    separator = _separator(path)
    try:
        # dtype=str + keep_default_na=False: no cell is turned into NaN, a number or a date
        frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, na_filter=False,
                            skipinitialspace=False)
    except FileNotFoundError:
        raise VlbiError(f"{path}: epoch sheet not found (paths are relative to the working directory); "
                        "check the config's `epochs:` or write one with `vlbicore campaign init`") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise VlbiError(f"{path}: not a readable {separator == ',' and 'CSV' or 'TSV'} table ({detail}); "
                        "one header line, then one line per epoch") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.apply(lambda column: column.str.strip()).astype(object)
    optional = [c for c in frame.columns if c not in ("id", "uvfits")]
    frame[optional] = frame[optional].where(frame[optional] != "", None)
    return frame


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts without their absent (None) cells: the same shape as inline ``epochs:`` entries."""
    return [{k: v for k, v in row.items() if v is not None} for row in frame.to_dict("records")]


def sheet_problems(frame: pd.DataFrame, path, schema_path: pathlib.Path = SCHEMA_PATH) -> list[str]:
    """One line per problem: unknown or missing columns, rows breaking the schema, duplicate ids."""
    import jsonschema

    problems = []
    unknown = [c for c in frame.columns if c not in COLUMNS]
    if unknown:
        problems.append(f"{path}: unknown column(s) {', '.join(map(repr, unknown))}; "
                        f"the columns are {', '.join(COLUMNS)} (id and uvfits required)")
    missing = [c for c in ("id", "uvfits") if c not in frame.columns]
    if missing:
        problems.append(f"{path}: no {' and no '.join(missing)} column; the header line must name them")
    if unknown or missing:
        return problems
    if frame.empty:
        return [f"{path}: no epochs (only a header line); add one line per uvfits file"]
    validator = jsonschema.Draft202012Validator(yaml.safe_load(schema_path.read_text()))
    seen: dict[str, int] = {}
    for index, row in enumerate(records(frame)):
        line = index + 2  # 1-based, after the header line
        where = f"{path} line {line}" + (f" (id {row['id']!r})" if row.get("id") else "")
        for error in sorted(validator.iter_errors(row), key=lambda e: [str(p) for p in e.absolute_path]):
            column = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"{where}: {column + ': ' if column else ''}{error.message}")
        if row.get("id"):
            if row["id"] in seen:
                problems.append(f"{where}: id is used twice (also line {seen[row['id']]}); give every epoch its own id")
            seen.setdefault(row["id"], line)
    return problems


def read_epoch_sheet(path) -> list[dict]:
    """The checked epochs of a sheet; one ``VlbiError`` naming every problem (line and column)."""
    frame = read_sheet_frame(path)
    problems = sheet_problems(frame, path)
    if problems:
        raise VlbiError("; ".join(problems))
    return records(frame)


def campaign_epochs(config: dict, source: str = "config") -> list[dict]:
    """The campaign's epochs: the inline ``epochs:`` list, or the rows of the epoch sheet it names
    (read and checked here; ids are unique in both cases)."""
    epochs = config.get("epochs") or []
    if is_sheet(epochs):
        return read_epoch_sheet(epochs)
    check_epochs(epochs, source)
    return list(epochs)


def check_epochs(epochs: list[dict], source: str = "config") -> None:
    """Epoch ids of an inline list are unique (a JSON schema cannot say 'unique by id')."""
    seen = set()
    for index, epoch in enumerate(epochs):
        if epoch["id"] in seen:
            raise VlbiError(f"{source}: epochs[{index}].id: {epoch['id']!r} is used twice; give every epoch its own id")
        seen.add(epoch["id"])


def write_epoch_sheet(rows: Iterable[dict], path) -> pathlib.Path:
    """Write epochs as a sheet (TSV or CSV by the suffix), columns in the schema's order, text only."""
    path = pathlib.Path(path)
    separator = _separator(path)
    rows = list(rows)
    columns = [c for c in COLUMNS if c in ("id", "uvfits") or any(row.get(c) for row in rows)]
    for row in rows:
        for key, value in row.items():
            if separator in str(value) or "\n" in str(value) or '"' in str(value):
                raise VlbiError(f"{path}: {key} {value!r} holds a separator, quote or line break; rename it")
    frame = pd.DataFrame([{c: str(row.get(c) or "") for c in columns} for row in rows], columns=columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep=separator, index=False)
    return path
