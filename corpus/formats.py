"""Reading one corpus file: its documents per format, its lines and JSON records, and checks of its UTF-8.

Files are read line by line (`.txt`, `.jsonl`, `.csv`) or in record batches (`.parquet`), so memory does not grow
with the file. Documents per format:

- `.txt`: by default a *paragraph*: the lines up to the next blank (whitespace-only) line, joined as they
  are in the file, without the final line break (a paragraph longer than `MAX_PARAGRAPH_CHARS` is cut at
  a line end so memory stays bounded). `sample_by="line"` makes every non-empty line a document and
  `sample_by="document"` reads the whole file as one.
- `.jsonl` (one JSON object per line) and `.json` (a JSON array of objects, or JSON lines): the
  `text_column` field; a list of strings is joined with newlines (the `paragraphs` of a poem).
- `.csv`: the `text_column` column. `.parquet`: the `text_column` column, read in record batches.
- `.gz` after any of these: the same, gzip-compressed.

Empty documents are skipped. Errors name the file and the byte offset, line or item.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import json
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .sources import SUPPORTED_SUFFIXES, Source, format_suffix

MAX_PARAGRAPH_CHARS = 1 << 20
BATCH_SIZE = 1000


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


# What a strict reader advises on invalid UTF-8; a command without an --errors option passes its own advice.
REPLACE_ADVICE = "fix the file or read it with --errors replace to substitute U+FFFD"


def _utf8_error(path: Path, offset: int, error: UnicodeDecodeError, advice: str = REPLACE_ADVICE) -> ValueError:
    bad = error.object[error.start : error.end]
    return ValueError(f"{path}: invalid UTF-8 at byte offset {offset} (bytes {bad!r}: {error.reason}); {advice}")


@contextlib.contextmanager
def named_read_errors(path: Path) -> Iterator[None]:
    """Errors of a corrupt or cut-off .gz (gzip's own name neither the file nor what is wrong with it: "Not a
    gzipped file (b'Tw')") as a ValueError naming `path`."""
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: not a readable gzip file ({error})") from None


def check_utf8(files: Iterable[Path], chunk_size: int = 1 << 20, advice: str = REPLACE_ADVICE) -> None:
    """Raise a `ValueError` naming the file and byte offset of the first invalid UTF-8 in `files`.

    A fast pass (hundreds of MB/s) run before long jobs, so a bad byte near the end of a corpus is found
    before hours of training are spent, not after. Parquet files hold typed strings and are skipped.
    `advice` ends the message (what the user can do about it).
    """
    for path in files:
        if format_suffix(path) == ".parquet":
            continue
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        offset = 0
        with _open_binary(path) as handle, named_read_errors(path):
            while chunk := handle.read(chunk_size):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as error:
                    # The decoder may hold back up to 3 bytes of an unfinished character from the last chunk.
                    pending = len(error.object) - len(chunk)
                    raise _utf8_error(path, offset - pending + error.start, error, advice) from None
                offset += len(chunk)
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as error:
                raise _utf8_error(path, offset - len(error.object) + error.start, error, advice) from None


def _decoded_lines(path: Path, errors: str, advice: str = REPLACE_ADVICE) -> Iterator[str]:
    """The lines of `path` (line breaks kept: only "\\n" ends a line), decoded as UTF-8; strict errors name the byte
    offset."""
    offset = 0
    with _open_binary(path) as handle, named_read_errors(path):
        for raw in handle:
            try:
                line = raw.decode("utf-8", errors)
            except UnicodeDecodeError as error:
                raise _utf8_error(path, offset + error.start, error, advice) from None
            if offset == 0 and line.startswith("\ufeff"):
                line = line[1:]
            offset += len(raw)
            yield line


def _strip_line_break(line: str) -> str:
    if line.endswith("\n"):
        line = line[:-1]
        line = line.removesuffix("\r")
    return line


def text_lines(path: Source, errors: str = "strict", advice: str = REPLACE_ADVICE) -> Iterator[str]:
    """The lines of a UTF-8 text file (gzip when it ends in .gz), without their line ends ("\\n" or "\\r\\n"), one
    at a time; invalid UTF-8 (strict) and a corrupt or cut-off .gz are errors naming the file, `advice` ending the
    first."""
    return (_strip_line_break(line) for line in _decoded_lines(Path(path), errors, advice))


def _read_txt(path: Path, errors: str, sample_by: str) -> Iterator[str]:
    lines = _decoded_lines(path, errors)
    if sample_by == "line":
        for line in lines:
            if line := _strip_line_break(line):
                yield line
    elif sample_by == "document":
        if text := "".join(lines):
            yield text
    else:
        paragraph: list[str] = []
        size = 0
        for line in lines:
            if line.strip():
                paragraph.append(line)
                size += len(line)
                if size < MAX_PARAGRAPH_CHARS:
                    continue
            if paragraph:
                yield _strip_line_break("".join(paragraph))
            paragraph, size = [], 0
        if paragraph:
            yield _strip_line_break("".join(paragraph))


def _text_field(record: Any, text_column: str, where: str) -> str | None:
    if not isinstance(record, dict):
        raise TypeError(f"{where}: expected a JSON object with a {text_column!r} field, got {type(record).__name__}")
    if text_column not in record:
        found = ", ".join(map(str, record)) or "none"
        raise ValueError(f"{where}: no text column {text_column!r}; columns found: {found} (use --text-column)")
    return as_text(record[text_column], text_column, where)


def as_text(value: Any, text_column: str, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return "\n".join(value)
    raise ValueError(
        f"{where}: column {text_column!r} holds {type(value).__name__}, expected a string or a list of strings"
    )


def json_records(path: Source, errors: str = "strict") -> Iterator[tuple[str, Any]]:
    """The records of a `.jsonl` or `.json` file (a JSON array, or one JSON value per line), one at a time, each
    with where it is ("FILE line N", "FILE item N"). Invalid JSON raises naming the file and line, and so does a
    file holding one multi-line JSON object where records are expected."""
    path = Path(path)
    if format_suffix(path) == ".json":
        with _open_binary(path) as handle, named_read_errors(path):
            head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        if head.startswith(b"["):
            for index, record in enumerate(load_json(path, errors)):
                yield f"{path} item {index}", record
            return
    for number, line in enumerate(_decoded_lines(path, errors), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == 1:
                _refuse_one_object(path, errors)
            raise ValueError(f"{path} line {number}: invalid JSON ({error})") from None
        yield f"{path} line {number}", record


def load_json(path: Source, errors: str = "strict") -> Any:
    """The content of one JSON file (gzip when .gz), parsed whole; broken JSON is an error naming the file, line and
    column. (JSON lines, `json_records`, is the streaming format for large corpora.)"""
    path = Path(path)
    with _open_binary(path) as handle, named_read_errors(path):
        raw = handle.read()
    try:
        content = raw.decode("utf-8", errors)
    except UnicodeDecodeError as error:
        raise _utf8_error(path, error.start, error) from None
    try:
        return json.loads(content.lstrip("\ufeff"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from None


def _refuse_one_object(path: Path, errors: str) -> None:
    try:
        content = load_json(path, errors)
    except ValueError:
        return
    if isinstance(content, dict):
        raise ValueError(
            f"{path}: a JSON object (keys: {', '.join(map(str, content)) or 'none'}) where a list of records is "
            "expected; give the records as a JSON array of objects or one object per line (JSON lines)"
        )


def _read_json(path: Path, errors: str, text_column: str) -> Iterator[str]:
    for where, record in json_records(path, errors):
        if text := _text_field(record, text_column, where):
            yield text


def _read_csv(path: Path, errors: str, text_column: str) -> Iterator[str]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(_decoded_lines(path, errors))
    if reader.fieldnames is None:
        return
    if text_column not in reader.fieldnames:
        raise ValueError(
            f"{path}: no text column {text_column!r}; columns found: {', '.join(reader.fieldnames)} "
            "(use --text-column)"
        )
    for row in reader:
        if text := row[text_column]:
            yield text


def _read_parquet(path: Path, text_column: str) -> Iterator[str]:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        if text_column not in names:
            raise ValueError(f"{path}: no text column {text_column!r}; columns found: {', '.join(names)}")
        for batch in parquet.iter_batches(batch_size=BATCH_SIZE, columns=[text_column]):
            for value in batch.column(0).to_pylist():
                if text := as_text(value, text_column, str(path)):
                    yield text
    except pyarrow.ArrowException as error:  # pyarrow's messages do not name the file
        raise ValueError(f"{path}: not a readable parquet file ({error})") from None


def read_file(path: Source, *, text_column: str = "text", errors: str = "strict", sample_by: str = "paragraph"):
    """The documents of one corpus file (see the module docstring for what a document is per format)."""
    path = Path(path)
    suffix = format_suffix(path)
    if suffix == ".txt":
        return _read_txt(path, errors, sample_by)
    if suffix in (".jsonl", ".json"):
        return _read_json(path, errors, text_column)
    if suffix == ".csv":
        return _read_csv(path, errors, text_column)
    if suffix == ".parquet":
        return _read_parquet(path, text_column)
    raise ValueError(f"unsupported file type {path.name!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")

