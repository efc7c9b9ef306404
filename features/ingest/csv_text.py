"""CSV files read as text with faulty rows set aside one by one, never the whole file.

Both CSV readers (`intent import table` and `intent validate --input x.csv`) read every
column as text (typing is the validator's job). A line that is not UTF-8 or has the wrong
number of fields is set aside with its 1-based line number and its text (bad bytes as `\\x`
escapes, so nothing is lost); blank lines are counted, not records. Line numbers assume one
record per line (no quoted line breaks), as the rest of the pipeline does.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

# What a set-aside line becomes for the parser: one field, so a row with the wrong number of
# fields, which the invalid-row handler then recognises by its line number.
_PLACEHOLDER = b"\x00"


class CsvHeaderError(ValueError):
    """The file has no header line, or it is not UTF-8."""


@dataclass(frozen=True)
class CsvText:
    """A CSV file as text columns plus what was set aside."""

    table: pa.Table
    lines: np.ndarray  # 1-based line of each table row (the header is line 1)
    undecodable: list[tuple[int, str]]  # (line, text with \x escapes)
    malformed: list[tuple[int, str]]  # (line, text): wrong number of fields
    blank: int  # blank lines (not records)


def read_csv_text(
    path: Path, separator: str, null_values: list[str], *, quoted_can_be_null: bool = True
) -> CsvText:
    """Read `path` with every column as text; faulty rows are set aside, not fatal."""
    import pyarrow.csv as pacsv

    data = Path(path).read_bytes()
    try:
        first = data.split(b"\n", 1)[0].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CsvHeaderError("the header is not UTF-8 text (re-export as UTF-8)") from exc
    header = next(csv.reader(io.StringIO(first), delimiter=separator), None)
    if not header:
        raise CsvHeaderError("empty CSV file (no header)")
    data, undecodable, blank = _set_aside(data)
    aside = {line for line, _ in undecodable} | set(blank)
    malformed: list[tuple[int, str]] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        line = int(row.number) if row.number is not None else -1
        if line not in aside:
            malformed.append((line, row.text))
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(use_threads=False),
        parse_options=pacsv.ParseOptions(
            delimiter=separator, invalid_row_handler=invalid, ignore_empty_lines=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            null_values=null_values,
            strings_can_be_null=True,
            quoted_strings_can_be_null=quoted_can_be_null,
        ),
    )
    # physical line numbers (header = 1) of the parsed rows: every line not set aside
    gone = aside | {line for line, _ in malformed}
    numbers = (n for n in range(2, 2 + table.num_rows + len(gone)) if n not in gone)
    lines = np.fromiter(numbers, dtype=np.int64, count=table.num_rows)
    return CsvText(table, lines, undecodable, malformed, len(blank))


def _set_aside(data: bytes) -> tuple[bytes, list[tuple[int, str]], list[int]]:
    """Replace lines that are not UTF-8 or are blank by a placeholder (line numbers hold).

    Returns the data, (1-based line, text with the bad bytes as \\x escapes) of each
    undecodable line, and the 1-based numbers of blank lines.
    """
    try:
        data.decode("utf-8")
        clean = re.search(rb"\n[ \t\r]*\n", data) is None
    except UnicodeDecodeError:
        clean = False
    if clean:
        return data, [], []
    lines = data.split(b"\n")
    last = len(lines) - 1 if data.endswith(b"\n") else len(lines)  # text after the final \n
    bad: list[tuple[int, str]] = []
    blank: list[int] = []
    for i in range(1, last):  # the header (line 1) decoded already
        raw = lines[i]
        if not raw.strip():
            blank.append(i + 1)
            lines[i] = _PLACEHOLDER
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append((i + 1, raw.rstrip(b"\r").decode("utf-8", "backslashreplace")))
            lines[i] = _PLACEHOLDER
    return b"\n".join(lines), bad, blank
