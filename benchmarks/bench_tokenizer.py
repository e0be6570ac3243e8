"""Compression and training speed: the ScratchLM tokenizer with each of its pre-tokenizers (`qwen2`, the default and
llama.cpp's, and `scratchlm-v1`, the split of earlier releases) vs the stock `tokenizers.ByteLevelBPETokenizer`.

Protocol (issue 3): train on the first 90 % of the bytes of `tinyshakespeare/input.txt` plus the Song ci of
`chinese-poetry` (`宋词/ci.song.*.json` in sorted order, each poem's `paragraphs` joined, one poem a line,
every 10th poem, index 0, 10, 20, ..., held out); measure bytes per token on the held-out English, the
held-out Chinese and `wikitext-2-partial/test.txt`. Both tokenizers get the same corpus (the same strings,
in the same order) and `min_frequency=2`; the ScratchLM vocabulary includes its 4 special tokens. Training
runs are interleaved and repeated, and the best time of each is kept, since other work may share the CPUs.

    python benchmarks/bench_tokenizer.py [--vocab-sizes 4096 8192 32768] [--repeats 2]
        [--pretokenizers qwen2 scratchlm-v1] [--no-stock]

Prints a table and writes benchmarks/results/tokenizer.json.

    python benchmarks/bench_tokenizer.py --chinese-coverage [--vocab-sizes 8192 16384 32768]

trains on all the Song ci plus the `waimai_10k` reviews and reports, per vocabulary size, how many of their
distinct Chinese characters are single tokens (the rest fall back to bytes outside learnt words), and tokens
per character; writes benchmarks/results/tokenizer_chinese_coverage.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from tokenizers import ByteLevelBPETokenizer

from scratchlm.corpus import read_corpus
from scratchlm.tokenization import character_coverage, train_tokenizer
from scratchlm.tokenization.tokenization_scratchlm import PRETOKENIZERS

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SCRATCHLM_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results" / "tokenizer.json"
COVERAGE_RESULTS = ROOT / "benchmarks" / "results" / "tokenizer_chinese_coverage.json"
LINES_PER_CHUNK = 1000


def song_ci(data_dir: Path) -> list[str]:
    poems = []
    for path in sorted((data_dir / "chinese-poetry" / "宋词").glob("ci.song.*.json")):
        poems.extend("".join(poem["paragraphs"]) for poem in json.loads(path.read_text(encoding="utf-8")))
    return poems


def load_protocol_data(data_dir: Path) -> dict:
    raw = (data_dir / "tinyshakespeare" / "input.txt").read_bytes()
    cut = int(len(raw) * 0.9)
    english_train, english_test = raw[:cut].decode("utf-8"), raw[cut:].decode("utf-8")

    poems = song_ci(data_dir)
    chinese_train = "".join(poem + "\n" for index, poem in enumerate(poems) if index % 10 != 0)
    chinese_test = "".join(poem + "\n" for index, poem in enumerate(poems) if index % 10 == 0)

    corpus = []
    for text in (english_train, chinese_train):
        lines = text.splitlines(keepends=True)
        corpus.extend("".join(lines[i : i + LINES_PER_CHUNK]) for i in range(0, len(lines), LINES_PER_CHUNK))
    return {
        "corpus": corpus,
        "train_bytes": sum(len(chunk.encode("utf-8")) for chunk in corpus),
        "held_out": {
            "english": english_test,
            "chinese": chinese_test,
            "wikitext": (data_dir / "wikitext-2-partial" / "test.txt").read_text(encoding="utf-8"),
        },
    }


def train_stock(corpus: list[str], vocab_size: int):
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(iter(corpus), vocab_size=vocab_size, min_frequency=2, show_progress=False)
    return tokenizer._tokenizer


def scratchlm_trainer(pretokenizer: str):
    def train(corpus: list[str], vocab_size: int):
        return train_tokenizer(
            iter(corpus), vocab_size=vocab_size, min_frequency=2, pretokenizer=pretokenizer, show_progress=False
        ).backend_tokenizer

    return train


def make_trainers(pretokenizers: list[str], stock: bool) -> dict:
    trainers = {"stock ByteLevelBPE": train_stock} if stock else {}
    trainers.update({f"ScratchLM {name}": scratchlm_trainer(name) for name in pretokenizers})
    return trainers


def bytes_per_token(backend, text: str) -> float:
    return len(text.encode("utf-8")) / len(backend.encode(text, add_special_tokens=False).ids)


def run(vocab_sizes: list[int], repeats: int, data_dir: Path, trainers: dict) -> dict:
    data = load_protocol_data(data_dir)
    megabytes = data["train_bytes"] / 1e6
    results = {"train_megabytes": megabytes, "repeats": repeats, "machine": platform.platform(), "runs": []}
    for vocab_size in vocab_sizes:
        best = dict.fromkeys(trainers, float("inf"))
        backends = {}
        for _ in range(repeats):
            for name, train in trainers.items():  # interleaved, so both see the same load
                start = time.perf_counter()
                backends[name] = train(data["corpus"], vocab_size)
                best[name] = min(best[name], time.perf_counter() - start)
        for name, backend in backends.items():
            row = {"tokenizer": name, "vocab_size": vocab_size, "train_mb_per_s": megabytes / best[name]}
            for split, text in data["held_out"].items():
                row[f"{split}_bytes_per_token"] = bytes_per_token(backend, text)
                if name.startswith("ScratchLM"):
                    assert backend.decode(backend.encode(text).ids) == text, f"round trip failed on {split}"
            results["runs"].append(row)
            print_row(row, flush=True)
    return results


def chinese_coverage(vocab_sizes: list[int], data_dir: Path) -> dict:
    reviews = list(read_corpus(data_dir / "waimai_10k" / "waimai_10k.csv", text_column="review"))
    texts = song_ci(data_dir) + reviews
    results = {"train_megabytes": sum(len(text.encode("utf-8")) for text in texts) / 1e6, "runs": []}
    print(f"{'vocab':>7}{'hanzi covered':>22}{'of occurrences':>16}{'tokens/char':>13}", flush=True)
    for vocab_size in vocab_sizes:
        tokenizer = train_tokenizer(iter(texts), vocab_size=vocab_size, show_progress=False)
        coverage = character_coverage(tokenizer, texts)
        row = {"vocab_size": vocab_size, **vars(coverage), "tokens_per_character": coverage.tokens_per_character}
        results["runs"].append(row)
        print(
            f"{vocab_size:>7}{coverage.han_covered_distinct:>10,} of {coverage.han_distinct:>6,}"
            f"{coverage.occurrence_share:>16.1%}{coverage.tokens_per_character:>13.3f}",
            flush=True,
        )
    return results


HEADER = f"{'tokenizer':<24}{'vocab':>7}{'english':>10}{'chinese':>10}{'wikitext':>10}{'train MB/s':>12}"


def print_row(row: dict, flush: bool = False) -> None:
    print(
        f"{row['tokenizer']:<24}{row['vocab_size']:>7}{row['english_bytes_per_token']:>10.3f}"
        f"{row['chinese_bytes_per_token']:>10.3f}{row['wikitext_bytes_per_token']:>10.3f}"
        f"{row['train_mb_per_s']:>12.2f}",
        flush=flush,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[4096, 8192, 32768])
    parser.add_argument("--repeats", type=int, default=2, help="training runs per tokenizer; the best time counts")
    parser.add_argument("--pretokenizers", nargs="+", default=list(PRETOKENIZERS), choices=list(PRETOKENIZERS))
    parser.add_argument("--no-stock", action="store_true", help="leave out the stock ByteLevelBPETokenizer")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--chinese-coverage", action="store_true", help="measure Chinese character coverage instead")
    args = parser.parse_args()

    if args.chinese_coverage:
        output = args.output if args.output != RESULTS else COVERAGE_RESULTS
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(chinese_coverage(args.vocab_sizes, args.data_dir), indent=2) + "\n")
        return
    print("bytes per token on held-out text (higher is better)")
    print(HEADER, flush=True)
    results = run(args.vocab_sizes, args.repeats, args.data_dir, make_trainers(args.pretokenizers, not args.no_stock))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\n{HEADER}")
    for row in results["runs"]:
        print_row(row)
    print(f"(training corpus {results['train_megabytes']:.2f} MB; results in {args.output})")


if __name__ == "__main__":
    main()
