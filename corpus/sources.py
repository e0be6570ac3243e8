"""Corpus sources: which files a source names, `datasets` data sets, the text column of each source, and the
`SourceSettings` that say what to read.

A source is a file, a glob (`corpus/**/*.txt`), a directory (searched recursively for the supported suffixes), a
`datasets` data set saved with `save_to_disk`, a `datasets.Dataset`/`IterableDataset`, or a Hub data set id
(`owner/name`, streamed; needs the network). Every command resolves its sources here, corpora and tables alike.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".json", ".csv", ".parquet")
SAMPLE_BY_CHOICES = ("paragraph", "line", "document")
ERRORS_CHOICES = ("strict", "replace")
_GLOB_CHARS = set("*?[")

Source = str | os.PathLike


def format_suffix(path: Path) -> str:
    """`.txt` for `a.txt` and `a.txt.gz`, the format that decides how the file is parsed."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def is_supported(path: Path, suffixes: Sequence[str] = SUPPORTED_SUFFIXES) -> bool:
    return format_suffix(path) in suffixes


def _check_file(path: Path, source: Source, suffixes: Sequence[str] = SUPPORTED_SUFFIXES, what: str = "corpus") -> None:
    if not is_supported(path, suffixes):
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
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_supported(p, suffixes))
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



def _looks_like_hub_id(text: str, suffixes: Sequence[str]) -> bool:
    return (
        not _GLOB_CHARS & set(text)
        and not is_supported(Path(text), suffixes)
        and text.count("/") <= 1
        and not text.startswith((".", "/", "~"))
    )


def is_dataset_source(source: Any, suffixes: Sequence[str] = SUPPORTED_SUFFIXES) -> bool:
    """Whether `source` is a data set (an object, a `save_to_disk` directory or a Hub id) rather than files: a path
    that does not exist is a Hub id when it looks like one (no glob, none of `suffixes`, `owner/name` at most)."""
    if not isinstance(source, (str, os.PathLike)) or is_saved_dataset(source):
        return True
    return not Path(source).expanduser().exists() and _looks_like_hub_id(os.fspath(source), suffixes)


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
            elif where and (Path(where).expanduser().exists() or is_supported(Path(where))):
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
        if not is_dataset_source(source):
            try:
                files.extend(resolve_files(source))
            except (OSError, ValueError):  # reported where the sources are read
                pass
    return files


def _same_file(where: str, file: Path) -> bool:
    path = Path(where).expanduser()
    return where == file.name or (path.exists() and path.resolve() == file.resolve())



def split_text_columns(spec: str | Sequence[str] | None, first: Sequence[Source],
                       second: Sequence[Source]) -> tuple[TextColumns, TextColumns]:
    """The text columns of two groups of sources (training and validation files) from one `--text_column` value read
    against both together: a list of names is matched to the first group, then the second, in order."""
    first, second = list(first), list(second)
    columns = TextColumns.parse(spec, first + second if first or second else [None])
    if columns.in_order:
        return TextColumns(in_order=columns.in_order[: len(first)]), TextColumns(in_order=columns.in_order[len(first) :])
    return columns, columns


@dataclass(frozen=True)
class SourceSettings:
    """What to read as documents: `files` (files, globs, directories) and/or `datasets` (`save_to_disk` directories
    or Hub ids; `dataset_config` and `split` choose within them), each source's text column, what a document of a
    .txt file is (`sample_by`), what to do with invalid UTF-8 (`errors`), at most `max_documents` documents, and
    whether a Hub data set is streamed and the documents come as a stream (`streaming`)."""

    files: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    dataset_config: str | None = None
    split: str = "train"
    text_column: str | tuple[str, ...] | TextColumns = "text"
    sample_by: str = "paragraph"
    errors: str = "strict"
    max_documents: int | None = None
    streaming: bool = False

    def __post_init__(self):
        object.__setattr__(self, "files", tuple(os.fspath(file) for file in self.files))
        object.__setattr__(self, "datasets", tuple(os.fspath(name) for name in self.datasets))
        if not self.sources:
            raise ValueError("no corpus sources given")
        if self.sample_by not in SAMPLE_BY_CHOICES:
            raise ValueError(f"sample_by must be one of {', '.join(SAMPLE_BY_CHOICES)}, got {self.sample_by!r}")
        if self.errors not in ERRORS_CHOICES:
            raise ValueError(f"errors must be one of {', '.join(ERRORS_CHOICES)}, got {self.errors!r}")
        if self.max_documents is not None and self.max_documents < 1:
            raise ValueError(f"max_documents must be positive, got {self.max_documents}")
        object.__setattr__(self, "text_column", TextColumns.parse(self.text_column, self.sources))

    @property
    def sources(self) -> tuple[str, ...]:
        return (*self.files, *self.datasets)
