"""GGUF export verified in llama.cpp (issue 13): tokenization and greedy text against ScratchLM/transformers.

Needs `llama-cpp-python` (it builds llama.cpp from source: `pip install llama-cpp-python`, 10-30 minutes on 2 cores,
which is why this is a benchmark and not a test; tests/test_export_gguf.py checks the file with `gguf` alone).

Protocol: a tokenizer trained (vocabulary 4096, the default qwen2 pre-tokenizer) on the first 400 kB of
`tinyshakespeare/input.txt` plus the Song ci of `chinese-poetry` (`宋词/ci.song.0.json`, `ci.song.1000.json`); a
`tiny` ScratchLM model, random with seed 0 and initializer_range 0.2 (so that greedy text varies with the prompt;
equality of greedy text on a random model is as strict a check as on a trained one), saved in float32; exported with
`scratchlm-export --outtype f16` and `q8_0`. Checks:

- llama.cpp's tokenization of mixed English/Chinese/emoji/digit texts equals ScratchLM's (ids), and its
  detokenization gives the text back;
- llama.cpp's greedy continuation of three prompts equals transformers' `generate` for 32 tokens. Transformers runs
  the float32 weights rounded to float16 and back (what the f16 file holds), in float32, as llama.cpp computes on
  CPU; eos does not stop either side. For q8_0 the number of matching leading tokens is reported (rounding differs).

    python benchmarks/bench_gguf.py

Prints a summary and writes benchmarks/results/gguf.json.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, GenerationConfig

from scratchlm.inference.export import main as export_main
from scratchlm.modeling import ScratchLMConfig, ScratchLMForCausalLM
from scratchlm.tokenization import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SCRATCHLM_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results" / "gguf.json"
NEW_TOKENS = 32
TOKENIZATION_TEXTS = [
    "Hello, world! It's 2026 and we've 3.14159 reasons: 12345678.",
    "春风又绿江南岸，明月何时照我还？床前明月光。",
    "Mixed 混合 text: emoji 😀🚀👍🏽 and 家人👨‍👩‍👧 — “quotes” ‘single’ … tabs\tand\n\nnewlines  double  spaces",
    "ROMEO:\nBut, soft! what light through yonder window breaks?\n\n第一章 1.2.3 ½ ① Ⅳ ＡＢＣ１２３",
    "   leading spaces, trailing spaces   \n\t\n",
]
PROMPTS = ["ROMEO:\nBut, soft! what light", "春风又绿江南岸", "The quick brown fox 123"]


def corpus() -> list[str]:
    english = (DATA_DIR / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:400_000].split("\n\n")
    chinese = []
    for name in ("ci.song.0.json", "ci.song.1000.json"):
        poems = json.loads((DATA_DIR / "chinese-poetry" / "宋词" / name).read_text(encoding="utf-8"))
        chinese += ["".join(poem["paragraphs"]) for poem in poems]
    return english + chinese


def build_model(directory: Path):
    tokenizer = train_tokenizer(corpus(), vocab_size=4096, show_progress=False)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(0)
    model = ScratchLMForCausalLM(ScratchLMConfig.from_preset("tiny", vocab_size=len(tokenizer), initializer_range=0.2,
                                                             **ids))
    model.generation_config = GenerationConfig(**ids)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model.eval(), AutoTokenizer.from_pretrained(directory)


def transformers_greedy(model, tokenizer, prompt: str) -> list[int]:
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    config = GenerationConfig(do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=0, eos_token_id=None,
                              pad_token_id=tokenizer.pad_token_id)
    with torch.inference_mode():
        output = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    return output[0, ids.shape[1] :].tolist()


def llama_cpp_greedy(llm, tokenizer, prompt: str) -> list[int]:
    llm.reset()
    tokens = []
    for token in llm.generate(tokenizer.encode(prompt), top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        tokens.append(token)
        if len(tokens) == NEW_TOKENS:
            break
    return tokens


def leading_matches(a: list[int], b: list[int]) -> int:
    return next((index for index, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main() -> None:
    from llama_cpp import Llama

    results = {"platform": platform.platform(), "new_tokens": NEW_TOKENS}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        model, tokenizer = build_model(work / "model")
        # What the f16 file holds, computed in float32 like llama.cpp on CPU.
        rounded = ScratchLMForCausalLM.from_pretrained(work / "model", dtype=torch.float16).float().eval()

        for outtype in ("f16", "q8_0"):
            path = work / f"model-{outtype}.gguf"
            start = time.perf_counter()
            export_main([str(work / "model"), "--outtype", outtype, "--output", str(path)])
            entry = {"export_seconds": round(time.perf_counter() - start, 2), "bytes": path.stat().st_size}
            llm = Llama(model_path=str(path), n_ctx=512, n_threads=2, seed=0, verbose=False)

            tokenization = []
            for text in TOKENIZATION_TEXTS:
                ours = tokenizer.encode(text)
                theirs = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
                detokenized = llm.detokenize(theirs).decode("utf-8", errors="replace")
                tokenization.append({"text": text, "equal_ids": ours == theirs, "roundtrip": detokenized == text,
                                     "tokens": len(ours)})
            entry["tokenization_equal"] = all(item["equal_ids"] for item in tokenization)
            entry["tokenization"] = tokenization

            generations = []
            for prompt in PROMPTS:
                reference = transformers_greedy(rounded if outtype == "f16" else model, tokenizer, prompt)
                ours = llama_cpp_greedy(llm, tokenizer, prompt)
                if len(reference) < NEW_TOKENS:  # transformers stopped at eos after all: compare up to it
                    ours = ours[: len(reference)]
                generations.append({
                    "prompt": prompt, "equal": reference == ours, "leading_matches": leading_matches(reference, ours),
                    "transformers": tokenizer.decode(reference), "llama_cpp": tokenizer.decode(ours),
                })
            entry["greedy_equal"] = all(item["equal"] for item in generations)
            entry["greedy"] = generations
            results[outtype] = entry
            del llm
            print(f"{outtype}: {entry['bytes'] / 1e6:.2f} MB, tokenization equal: {entry['tokenization_equal']}, "
                  f"greedy {NEW_TOKENS} tokens equal: {entry['greedy_equal']} "
                  f"(leading matches {[item['leading_matches'] for item in generations]})")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
