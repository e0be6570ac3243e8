"""Shared fixtures. Data sets are read from ../shared/data (SCRATCHLM_DATA overrides), never copied here."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import MappingProxyType

import pytest

DATA_DIR = Path(os.environ.get("SCRATCHLM_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

# Hides the editable install of `scratchlm` from a child interpreter, then proves it is gone: what runs after this
# sees only what a user of stock transformers has.
_WITHOUT_PACKAGE = """
import importlib.util, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
sys.path_importer_cache.clear()
sys.path[:] = [p for p in sys.path if p not in ("", ".") and not p.endswith("/main") and "scratchlm" not in p]
assert importlib.util.find_spec("scratchlm") is None, "scratchlm is still importable"
"""


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data sets. Missing: a skip on a workstation, a failure in CI (CI=true), where a green run must
    mean the whole suite ran."""
    if not DATA_DIR.is_dir():
        message = f"shared data not found at {DATA_DIR} (set SCRATCHLM_DATA)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{message}: CI runs the whole suite, so the data must be there")
        pytest.skip(message)
    return DATA_DIR


@pytest.fixture
def run_without_package(tmp_path):
    """Run Python code in a fresh interpreter where `scratchlm` cannot be imported; returns the completed process."""

    def run(code: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
        script = _WITHOUT_PACKAGE + textwrap.dedent(code)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=cwd or tmp_path, env=env, capture_output=True, text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"child process failed:\n{result.stdout}\n{result.stderr}"
        return result

    return run


# The tiny models of the model tests: every field a config needs, vocabulary and special token ids included.
_TINY_DECODER = MappingProxyType(dict(
    vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, eos_token_id=1, bos_token_id=2,
))
_TINY_SEQ2SEQ = MappingProxyType(dict(
    vocab_size=320, hidden_size=64, intermediate_size=160, encoder_layers=2, decoder_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    pad_token_id=2, bos_token_id=0, decoder_start_token_id=0,
))
# The tiny models of the command tests: sizes only, as overrides of the `tiny` preset; the vocabulary and the special
# token ids come from the tokenizer (`init_model("tiny", tiny_sizes, tokenizer)`).
_TINY_SIZES = MappingProxyType(dict(
    num_hidden_layers=1, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=128,
))


@pytest.fixture(scope="session")
def tiny_decoder_kwargs() -> MappingProxyType:
    """The `ScratchLMConfig` (and `LlamaConfig`) arguments of the tiny decoder, read-only: `{**kwargs, **changes}`."""
    return _TINY_DECODER


@pytest.fixture(scope="session")
def tiny_seq2seq_kwargs() -> MappingProxyType:
    """The `ScratchLMSeq2SeqConfig` arguments of the tiny encoder-decoder, read-only."""
    return _TINY_SEQ2SEQ


@pytest.fixture(scope="session")
def tiny_sizes() -> MappingProxyType:
    """Sizes of a one-layer decoder sized for a trained tokenizer: overrides of the `tiny` preset for `init_model`."""
    return _TINY_SIZES


@pytest.fixture(scope="session")
def tiny_seq2seq_sizes() -> MappingProxyType:
    """The same sizes for `init_seq2seq_model`: one encoder and one decoder layer."""
    sizes = {key: value for key, value in _TINY_SIZES.items() if key != "num_hidden_layers"}
    return MappingProxyType({**sizes, "encoder_layers": 1, "decoder_layers": 1})


@pytest.fixture(scope="session")
def tiny_config():
    """`tiny_config(**changes)`: the `ScratchLMConfig` of the tiny decoder, with any field changed."""
    from scratchlm.modeling import ScratchLMConfig

    def build(**changes):
        return ScratchLMConfig(**{**_TINY_DECODER, **changes})

    return build


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    """`tiny_model(cls=ScratchLMForCausalLM, seed=0, **config_changes)`: the tiny decoder under any head, seeded, in
    eval mode."""
    import torch

    from scratchlm.modeling import ScratchLMForCausalLM

    def build(cls=ScratchLMForCausalLM, seed: int = 0, **changes):
        torch.manual_seed(seed)
        return cls(tiny_config(**changes)).eval()

    return build


@pytest.fixture(scope="session")
def tiny_seq2seq_model():
    """`tiny_seq2seq_model(seed=0, **config_changes)`: the tiny encoder-decoder, seeded, in eval mode."""
    import torch

    from scratchlm.modeling import ScratchLMSeq2SeqConfig, ScratchLMSeq2SeqForConditionalGeneration

    def build(seed: int = 0, **changes):
        torch.manual_seed(seed)
        return ScratchLMSeq2SeqForConditionalGeneration(ScratchLMSeq2SeqConfig(**{**_TINY_SEQ2SEQ, **changes})).eval()

    return build


@pytest.fixture(scope="session")
def random_ids():
    """`random_ids(batch=2, length=12, seed=1, vocab_size=256)`: token ids drawn above the tiny decoder's special
    ids (0-2) from their own generator, so the same arguments give the same ids in any test."""
    import torch

    def draw(batch: int = 2, length: int = 12, seed: int = 1, vocab_size: int = _TINY_DECODER["vocab_size"]):
        return torch.randint(3, vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))

    return draw


# Mixed English/Chinese text for the tiny tokenizer of the inference tests (chat, serve, export).
_TINY_TEXT = [
    "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times.",
    "春风又绿江南岸，明月何时照我还。床前明月光，疑是地上霜。",
    "Numbers like 2019 and 3.14 split into digits; emoji 😀🚀 stay bytes. Hello, how are you today?",
    "I'm fine, thanks! We've been told they'll come, and you'd like some tea.",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE tokenizer of 400 tokens trained on a few English and Chinese sentences."""
    from scratchlm.tokenization import train_tokenizer

    return train_tokenizer(_TINY_TEXT * 20, vocab_size=400, min_frequency=2, show_progress=False)


@pytest.fixture(scope="session")
def tiny_causal_lm_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A randomly initialised (fixed seed) tiny ScratchLM causal LM saved with `tiny_tokenizer`."""
    import torch
    from transformers import GenerationConfig

    from scratchlm.modeling import ScratchLMConfig, ScratchLMForCausalLM

    directory = tmp_path_factory.mktemp("tiny_causal_lm")
    tokenizer = tiny_tokenizer
    torch.manual_seed(0)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    # A wider initialisation than training uses, so that greedy decoding varies with the prompt (at 0.02 a random
    # model answers every prompt with the same repeated token, and text comparisons would prove little).
    config = ScratchLMConfig.from_preset("tiny", vocab_size=len(tokenizer), initializer_range=0.2, **ids)
    model = ScratchLMForCausalLM(config)
    model.generation_config = GenerationConfig(**ids)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny-model tests: faster for tiny matrices, and many times faster per step
    than two when the 2-core machine is shared with other work."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def _file_size_limit(nbytes: int):
    """Writes past `nbytes` of any file fail with EFBIG, as a full disk fails them (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture
def file_size_limit():
    """`with file_size_limit(nbytes): ...`: a disk that fills after `nbytes` of any one file, for real writes."""
    return _file_size_limit


@pytest.fixture
def kill_9_when():
    """`kill_9_when(module, argv, ready, what, timeout=240)`: run `python -m module argv` and kill -9 it as soon as
    `ready()` is true (failing with `what` if it ends or times out first), the way a crash or a pulled plug would."""

    def run(module: str, argv: list[str], ready, what: str, timeout: float = 240) -> None:
        process = subprocess.Popen([sys.executable, "-m", module, *argv], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        deadline = time.time() + timeout
        try:
            while not ready():
                assert process.poll() is None and time.time() < deadline, what
                time.sleep(0.005)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()

    return run
