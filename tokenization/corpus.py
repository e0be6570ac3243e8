"""Read a text corpus as a stream of documents (one string at a time).

Used by tokenizer training and by the pretraining data pipeline. Memory does not grow with the corpus:
files are read line by line (`.txt`, `.jsonl`, `.csv`) or in record batches (`.parquet`), and `datasets`
data sets are iterated in batches or streamed from the Hub.

Sources are files, globs (`corpus/**/*.txt`), directories (searched recursively for the supported
suffixes), a `datasets` data set saved with `save_to_disk`, a `datasets.Dataset`/`IterableDataset`, or a
Hub data set id (`owner/name`, streamed; needs the network).

Documents per format:

- `.txt`: by default a *paragraph*: the lines up to the next blank (whitespace-only) line, joined as they
  are in the file, without the final line break (a paragraph longer than `MAX_PARAGRAPH_CHARS` is cut at
  a line end so memory stays bounded). `sample_by="line"` makes every non-empty line a document and
  `sample_by="document"` reads the whole file as one.
- `.jsonl` (one JSON object per line) and `.json` (a JSON array of objects, or JSON lines): the
  `text_column` field; a list of strings is joined with newlines (the `paragraphs` of a poem).
- `.csv`: the `text_column` column. `.parquet`: the `text_column` column, read in record batches.
- `.gz` after any of these: the same, gzip-compressed.

`text_column` is one name for every source, or one per source (`TextColumns`): `FILE:COLUMN` entries
(`poems.json:paragraphs reviews.csv:review`), or as many names as sources, matched in order.

Empty documents are skipped.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import glob
import gzip
import json
import os
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".json", ".csv", ".parquet")
SAMPLE_BY_CHOICES = ("paragraph", "line", "document")
ERRORS_CHOICES = ("strict", "replace")
MAX_PARAGRAPH_CHARS = 1 << 20
_GLOB_CHARS = set("*?[")
_BATCH_SIZE = 1000

Source = str | os.PathLike


def format_suffix(path: Path) -> str:
    """`.txt` for `a.txt` and `a.txt.gz`, the format that decides how the file is parsed."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _is_supported(path: Path, suffixes: Sequence[str] = SUPPORTED_SUFFIXES) -> bool:
    return format_suffix(path) in suffixes


def _check_file(path: Path, source: Source, suffixes: Sequence[str] = SUPPORTED_SUFFIXES, what: str = "corpus") -> None:
    if not _is_supported(path, suffixes):
        raise ValueError(
            f"unsupported file type {path.name!r} (from {str(source)!r}); supported: "
            f"{', '.join(suffixes)} (optionally gzip-compressed, .gz)"
        )
    if path.stat().st_size == 0:
        raise ValueError(f"{what} file is empty: {path}")


def _as_list(sources: Source | Iterable[Source]) -> list[Source]:
    if isinstance(sources, (str, os.PathLike)):
        return [sources]
    sources = list(sources)
    if not sources:
        raise ValueError("no corpus sources given")
    return sources


def is_saved_dataset(path: Source) -> bool:
    """Whether `path` is a directory written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in ("dataset_info.json", "dataset_dict.json"))


def resolve_files(sources: Source | Iterable[Source], suffixes: Sequence[str] = SUPPORTED_SUFFIXES,
                  what: str = "corpus") -> list[Path]:
    """Expand files, globs and directories into the list of files they name, in a stable order.

    Directories are searched recursively for files with one of `suffixes` (optionally `.gz`). Raises
    `FileNotFoundError` naming a source that matches nothing, and `ValueError` for an empty file or an
    unsupported file type; `what` names the kind of file in those messages ("corpus", "table").
    """
    files: list[Path] = []
    for source in _as_list(sources):
        text = os.fspath(source)
        path = Path(text).expanduser()
        if path.is_file():
            _check_file(path, source, suffixes, what)
            files.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _is_supported(p, suffixes))
            if not found:
                raise FileNotFoundError(f"no {what} files ({', '.join(suffixes)}) found in directory {text!r}")
            for file in found:
                _check_file(file, source, suffixes, what)
            files.extend(found)
        elif _GLOB_CHARS & set(text):
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True))
            matches = [p for p in matches if p.is_file()]
            if not matches:
                raise FileNotFoundError(f"no files match the pattern {text!r}")
            for file in matches:
                _check_file(file, source, suffixes, what)
            files.extend(matches)
        else:
            raise FileNotFoundError(f"{what} file not found: {text!r}")
    # A file named twice (e.g. by two overlapping globs) is read once.
    return list(dict.fromkeys(files))


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
    return _as_text(record[text_column], text_column, where)


def _as_text(value: Any, text_column: str, where: str) -> str | None:
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
        for batch in parquet.iter_batches(batch_size=_BATCH_SIZE, columns=[text_column]):
            for value in batch.column(0).to_pylist():
                if text := _as_text(value, text_column, str(path)):
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


def _looks_like_hub_id(text: str) -> bool:
    return (
        not _GLOB_CHARS & set(text)
        and not _is_supported(Path(text))
        and text.count("/") <= 1
        and not text.startswith((".", "/", "~"))
    )


def _is_dataset_source(source: Any) -> bool:
    if not isinstance(source, (str, os.PathLike)) or is_saved_dataset(source):
        return True
    return not Path(source).expanduser().exists() and _looks_like_hub_id(os.fspath(source))


def hub_offline() -> bool:
    """Offline mode, read from the environment now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import is_offline_mode

    flags = (os.environ.get(name, "").upper() for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return is_offline_mode() or any(flag in ("1", "ON", "YES", "TRUE") for flag in flags)


def load_dataset_source(source: Any, *, dataset_config: str | None = None, split: str = "train",
                        streaming: bool = True):
    """A `datasets` data set from a `save_to_disk` directory, a Hub id or a data set object.

    Hub data sets are streamed unless `streaming=False`; an unreachable Hub gives a ConnectionError naming the id.
    """
    import datasets

    if isinstance(source, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in source:
            raise ValueError(f"split {split!r} not found; splits: {', '.join(source)}")
        return source[split]
    if isinstance(source, (datasets.Dataset, datasets.IterableDataset)):
        return source
    if is_saved_dataset(source):
        return load_dataset_source(datasets.load_from_disk(os.fspath(source)), split=split)

    name = os.fspath(source)
    if Path(name).expanduser().exists():
        raise ValueError(f"{name!r} is a path but neither a supported file nor a data set saved with save_to_disk")
    if hub_offline():
        raise ConnectionError(
            f"cannot load data set {name!r} from the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE), "
            "and it is not a local file or save_to_disk directory"
        )
    try:
        return datasets.load_dataset(name, dataset_config, split=split, streaming=streaming)
    except Exception as error:  # the Hub client raises many kinds of errors when the network is down
        raise ConnectionError(
            f"could not load data set {name!r} (config {dataset_config!r}, split {split!r}) from the Hugging Face "
            f"Hub (is the network reachable, and is the id right? it is not a local file or save_to_disk "
            f"directory): {type(error).__name__}: {error}"
        ) from error


def _read_dataset(dataset, text_column: str, name: str) -> Iterator[str]:
    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise ValueError(f"data set {name}: no text column {text_column!r}; columns found: {', '.join(columns)}")
    for batch in dataset.iter(batch_size=_BATCH_SIZE):
        if text_column not in batch:
            raise ValueError(
                f"data set {name}: no text column {text_column!r}; columns found: {', '.join(batch)}"
            )
        for value in batch[text_column]:
            if text := _as_text(value, text_column, f"data set {name}"):
                yield text


@dataclass(frozen=True)
class TextColumns:
    """The text column of each source: one name for all, `FILE:COLUMN` entries, or one name per source in order.

    `FILE` in `FILE:COLUMN` is a source as given (a path, glob, directory or data set id), or a file it names
    (by path or by file name). A list of plain names as long as the sources pairs them in order; a single
    plain name next to `FILE:COLUMN` entries is the column of every other source.
    """

    default: str = "text"
    by_source: dict[str, str] = field(default_factory=dict)
    in_order: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str | Sequence[str] | TextColumns | None, sources: Sequence[Any]) -> TextColumns:
        """Read a `--text_column` value for `sources`; a clear error for a spec that fits them in no way."""
        if isinstance(spec, TextColumns):
            return spec
        names = [spec] if isinstance(spec, str) else list(spec or ["text"])
        given = [os.fspath(source) for source in sources if isinstance(source, (str, os.PathLike))]
        by_source, plain = {}, []
        for name in names:
            where, _, column = name.rpartition(":")
            if where and column and _names_a_source(where, given):
                by_source[where] = column
            elif where and (Path(where).expanduser().exists() or _is_supported(Path(where))):
                raise ValueError(
                    f"--text_column {name}: {where!r} is none of the sources ({', '.join(given) or 'none'})"
                )
            else:
                plain.append(name)
        if len(plain) <= 1:
            return cls(default=plain[0] if plain else "text", by_source=by_source)
        if not by_source and len(plain) == len(sources):
            return cls(in_order=tuple(plain))
        raise ValueError(
            f"--text_column got {len(plain)} names ({', '.join(plain)}) for {len(sources)} source(s): give one name "
            "for every source, one name per source in order, or FILE:COLUMN per source"
        )

    def column(self, index: int, source: Any, file: Path | None = None) -> str:
        """The column of the `index`-th source (and of `file`, one of the files it names)."""
        if self.in_order:
            return self.in_order[index]
        if isinstance(source, (str, os.PathLike)):
            for where, column in self.by_source.items():
                if where == os.fspath(source) or (file is not None and _same_file(where, file)):
                    return column
        return self.default


def _names_a_source(where: str, sources: list[str]) -> bool:
    return where in sources or any(_same_file(where, file) for file in _files_of(sources))


def _files_of(sources: list[str]) -> list[Path]:
    files = []
    for source in sources:
        if not _is_dataset_source(source):
            try:
                files.extend(resolve_files(source))
            except (OSError, ValueError):  # reported where the sources are read
                pass
    return files


def _same_file(where: str, file: Path) -> bool:
    path = Path(where).expanduser()
    return where == file.name or (path.exists() and path.resolve() == file.resolve())


def read_corpus(
    sources: Any,
    *,
    text_column: str | Sequence[str] | TextColumns = "text",
    errors: str = "strict",
    dataset_config: str | None = None,
    split: str = "train",
    sample_by: str = "paragraph",
    precheck_utf8: bool = False,
) -> Iterator[str]:
    """An iterator over the documents of `sources`, one string at a time (see the module docstring).

    `sources` is one source or a list of them: files, globs, directories, `save_to_disk` directories,
    `datasets` objects, or Hub data set ids. `text_column` is one name, or one per source (`TextColumns`).
    `errors="strict"` raises on invalid UTF-8 naming the file and
    byte offset; `errors="replace"` substitutes U+FFFD. Missing or empty files raise here, before any
    reading; the iterator raises `ValueError` at its end when no text was read at all. `precheck_utf8=True`
    (with `errors="strict"`) checks the encoding of every file before returning, so a long job fails at
    once on a bad byte near the end of its corpus.
    """
    if errors not in ERRORS_CHOICES:
        raise ValueError(f"errors must be one of {ERRORS_CHOICES}, got {errors!r}")
    if sample_by not in SAMPLE_BY_CHOICES:
        raise ValueError(f"sample_by must be one of {SAMPLE_BY_CHOICES}, got {sample_by!r}")
    sources = [sources] if not isinstance(sources, (list, tuple)) else list(sources)
    if not sources:
        raise ValueError("no corpus sources given")

    columns = TextColumns.parse(text_column, sources)
    # Resolve every file source before reading any, so a typo in the last one fails at once.
    plan: list[tuple[str, Any, str]] = []
    for index, source in enumerate(sources):
        if _is_dataset_source(source):
            plan.append(("dataset", source, columns.column(index, source)))
        else:
            plan.extend(("file", path, columns.column(index, source, path)) for path in resolve_files(source))

    if precheck_utf8 and errors == "strict":
        check_utf8(source for kind, source, _ in plan if kind == "file")
    return _read_plan(plan, errors, dataset_config, split, sample_by, sources)


def _read_plan(plan, errors, dataset_config, split, sample_by, sources) -> Iterator[str]:
    count = 0
    for kind, source, text_column in plan:
        if kind == "file":
            documents = read_file(source, text_column=text_column, errors=errors, sample_by=sample_by)
        else:
            dataset = load_dataset_source(source, dataset_config=dataset_config, split=split)
            name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
            documents = _read_dataset(dataset, text_column, repr(name))
        for document in documents:
            count += 1
            yield document
    if count == 0:
        raise ValueError(f"the corpus is empty: no text was read from {', '.join(map(str, sources))}")
