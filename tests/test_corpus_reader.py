"""Reading corpora as a stream of documents: formats, sources, and clear errors on bad input."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator

import pytest

from scratchlm.corpus import SourceSettings, TextColumns, load_json, read_corpus, read_source, resolve_files


def test_txt_documents(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("first line\nsecond line\n\n  \nnext paragraph\r\nends here\n\n\n", encoding="utf-8")
    assert list(read_corpus(path)) == ["first line\nsecond line", "next paragraph\r\nends here"]
    assert list(read_corpus(path, sample_by="line")) == [
        "first line", "second line", "  ", "next paragraph", "ends here",
    ]
    assert list(read_corpus(path, sample_by="document")) == [path.read_bytes().decode("utf-8")]


def test_read_corpus_is_a_lazy_stream(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"one\n\ntwo\n\nthree \xff\n")
    documents = read_corpus(path, sample_by="line")
    assert isinstance(documents, Iterator)
    # The documents before the bad byte arrive before the error: the file is read as it is consumed.
    assert next(documents) == "one" and next(documents) == "two"
    with pytest.raises(ValueError, match=r"a\.txt: invalid UTF-8 at byte offset 16"):
        next(documents)


def test_json_formats_join_lists_of_lines(data_dir, tmp_path):
    song = data_dir / "chinese-poetry" / "宋词" / "ci.song.0.json"
    first = json.loads(song.read_text(encoding="utf-8"))[0]
    documents = read_corpus(song, text_column="paragraphs")
    assert next(documents) == "\n".join(first["paragraphs"])
    assert sum(1 for _ in documents) == 999

    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"text": "a"}\n\n{"text": ""}\n{"text": null}\n{"text": ["b", "c"]}\n', encoding="utf-8")
    assert list(read_corpus(jsonl)) == ["a", "b\nc"]
    lines_in_json = tmp_path / "lines.json"
    lines_in_json.write_text('{"text": "x"}\n{"text": "y"}\n', encoding="utf-8")
    assert list(read_corpus(lines_in_json)) == ["x", "y"]


def test_csv_parquet_and_gzip(data_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    reviews = read_corpus(data_dir / "waimai_10k" / "waimai_10k.csv", text_column="review")
    assert next(reviews).startswith("很快，好吃")

    pq.write_table(pa.table({"body": ["x", None, "y"], "id": [1, 2, 3]}), tmp_path / "a.parquet")
    assert list(read_corpus(tmp_path / "a.parquet", text_column="body")) == ["x", "y"]

    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("gz one\ngz two\n")
    assert list(read_corpus(tmp_path / "b.txt.gz", sample_by="line")) == ["gz one", "gz two"]


def test_missing_text_column_names_the_columns_found(data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"no text column 'text'; columns found: label, review"):
        list(read_corpus(data_dir / "waimai_10k" / "waimai_10k.csv"))
    with pytest.raises(ValueError, match=r"item 0: no text column 'text'; columns found: author, paragraphs"):
        list(read_corpus(data_dir / "chinese-poetry" / "宋词" / "ci.song.0.json"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match=r"no text column 'text'; columns found: body"):
        list(read_corpus(tmp_path / "a.parquet"))


def test_resolve_files_globs_and_directories(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for name in ("b.txt", "sub/a.jsonl", "sub/deeper/c.csv", "sub/notes.md"):
        (tmp_path / name).write_text("x\n")
    assert resolve_files(tmp_path) == [tmp_path / p for p in ("b.txt", "sub/a.jsonl", "sub/deeper/c.csv")]
    assert resolve_files(str(tmp_path / "**" / "*.txt")) == [tmp_path / "b.txt"]
    # A file named twice is read once.
    assert resolve_files([tmp_path / "b.txt", str(tmp_path / "*.txt")]) == [tmp_path / "b.txt"]

    with pytest.raises(ValueError, match=r"unsupported file type 'notes\.md'"):
        resolve_files(tmp_path / "sub" / "notes.md")
    with pytest.raises(FileNotFoundError, match="corpus file not found: .*nope.txt"):
        resolve_files([tmp_path / "b.txt", tmp_path / "nope.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no corpus files .* found in directory"):
        resolve_files(tmp_path / "empty")
    (tmp_path / "zero.csv").write_text("")
    with pytest.raises(ValueError, match=r"corpus file is empty: .*zero\.csv"):
        read_corpus(tmp_path / "zero.csv")  # checked when called, before any document is read


def test_invalid_utf8_strict_and_replace(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl: invalid UTF-8 at byte offset 28"):
        list(read_corpus(path))
    assert list(read_corpus(path, errors="replace")) == ["ok", "caf\ufffd"]
    with pytest.raises(ValueError, match=r"bad\.jsonl: invalid UTF-8 at byte offset 28"):
        read_corpus(path, precheck_utf8=True)


def test_corrupt_or_cut_off_gzip_is_named_before_reading(tmp_path):
    (tmp_path / "fake.txt.gz").write_bytes(b"plain text, not gzip\n")
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(b"one paragraph\n" * 100)[:30])
    for name in ("fake.txt.gz", "cut.txt.gz"):
        with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}: not a readable gzip file"):
            read_corpus(tmp_path / name, precheck_utf8=True)


@pytest.mark.parametrize("name", ["fake.txt.gz", "cut.txt.gz", "fake.jsonl.gz", "cut.jsonl.gz", "cut.json.gz",
                                  "cut.csv.gz"])
@pytest.mark.parametrize("errors", ["strict", "replace"])
def test_corrupt_or_cut_off_gzip_is_named_while_reading(tmp_path, name, errors):
    """Without the pre-check (pretraining with --errors replace, the tokenizer, cloze) the reader names the file."""
    rows = "".join(json.dumps({"text": f"row {index}"}) + "\n" for index in range(300))
    content = {"txt": "one paragraph\n\n" * 300, "jsonl": rows, "json": json.dumps([{"text": "x"}] * 300),
               "csv": "text\n" + "a row\n" * 300}[name.split(".")[1]]
    compressed = gzip.compress(content.encode())
    path = tmp_path / name
    cut = compressed[: len(compressed) // 2]
    path.write_bytes(b"Two lines of plain text\nnot gzip\n" if name.startswith("fake") else cut)
    with pytest.raises(ValueError, match=rf"^{str(path).replace('.', '[.]')}: not a readable gzip file"):
        list(read_corpus(path, errors=errors))


def test_a_file_that_is_no_parquet_is_named(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(ValueError, match=rf"^{str(path).replace('.', '[.]')}: not a readable parquet file"):
        list(read_corpus(path))


def test_datasets_sources(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub.constants

    data = datasets.Dataset.from_dict({"content": ["a", "", "b"], "n": [1, 2, 3]})
    data.save_to_disk(tmp_path / "saved")
    assert list(read_corpus(tmp_path / "saved", text_column="content")) == ["a", "b"]
    datasets.DatasetDict({"validation": data}).save_to_disk(tmp_path / "dict")
    assert list(read_corpus(tmp_path / "dict", text_column="content", split="validation")) == ["a", "b"]
    with pytest.raises(ValueError, match="split 'train' not found; splits: validation"):
        list(read_corpus(tmp_path / "dict", text_column="content"))
    assert list(read_corpus(data.to_iterable_dataset(), text_column="content")) == ["a", "b"]
    with pytest.raises(ValueError, match="no text column 'text'; columns found: content, n"):
        list(read_corpus(data))

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match="'someone/corpus' from the Hugging Face Hub: offline"):
        list(read_corpus("someone/corpus"))


def test_text_column_per_source_reads_poems_and_reviews_together(data_dir):

    song = data_dir / "chinese-poetry" / "宋词" / "ci.song.0.json"
    reviews = data_dir / "waimai_10k" / "waimai_10k.csv"
    first_poem = "\n".join(json.loads(song.read_text(encoding="utf-8"))[0]["paragraphs"])
    by_file = list(read_corpus([song, reviews], text_column=[f"{song}:paragraphs", "waimai_10k.csv:review"]))
    assert by_file[0] == first_poem and by_file[1000].startswith("很快，好吃") and len(by_file) == 1000 + 11987
    assert list(read_corpus([song, reviews], text_column=["paragraphs", "review"])) == by_file  # in order
    # One plain name next to FILE:COLUMN entries is the column of the other sources.
    assert list(read_corpus([song, reviews], text_column=["review", "ci.song.0.json:paragraphs"])) == by_file

    with pytest.raises(ValueError, match=r"3 names \(a, b, c\) for 2 source\(s\)"):
        TextColumns.parse(["a", "b", "c"], [song, reviews])
    with pytest.raises(ValueError, match=r"'elsewhere\.csv' is none of the sources"):
        TextColumns.parse(["elsewhere.csv:review"], [song, reviews])
    with pytest.raises(ValueError, match=r"waimai_10k\.csv: no text column 'paragraphs'; columns found: label, review"):
        list(read_corpus([song, reviews], text_column="paragraphs"))  # one name for every source


def test_a_cut_off_json_file_is_named_with_the_place(tmp_path):
    """A published SQuAD file is one JSON object on one line: json's own message gives only the column."""
    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": []}] * 50})[:999])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: invalid JSON \(Unterminated string starting at: "
                                         r"line 1 column \d+"):
        load_json(path)
    path.write_text('{"data": [1]}')
    assert load_json(path) == {"data": [1]}


def test_source_settings_read_their_documents_and_refuse_bad_values(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n\nthree\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"body": "four"}\n', encoding="utf-8")
    settings = SourceSettings(files=(tmp_path / "a.txt", tmp_path / "b.jsonl"), text_column=("text", "body"))
    assert list(read_source(settings)) == ["one", "two", "three", "four"]
    assert settings.files == (str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl"))
    assert list(read_source(SourceSettings(files=(str(tmp_path / "a.txt"),), max_documents=2))) == ["one", "two"]
    for values, message in (({}, "no corpus sources"), ({"sample_by": "page"}, "sample_by must be one of"),
                            ({"errors": "ignore"}, "errors must be one of"), ({"max_documents": 0}, "positive")):
        with pytest.raises(ValueError, match=message):
            SourceSettings(**{"files": (str(tmp_path / "a.txt"),), **values} if values else values)
