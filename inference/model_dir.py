"""What the inference commands share: checking and loading the model of a directory (a full model, or a LoRA adapter
directory loaded onto its base and merged), and whether it answers through its chat template.

Every check runs before any weights are loaded and fails with one line naming the file or flag: a bad --device or
--dtype, a directory without a model, an adapter whose base is missing, truncated or corrupt safetensors weights, an
encoder-decoder where a decoder-only model is needed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from scratchlm.model_cards.run_record import (
    ADAPTER_CONFIG_FILE,
    CONFIG_FILE,
    MERGED_DIR,
    RUN_RECORD_FILE,
    TOKENIZER_CONFIG_FILE,
    RunRecord,
    is_adapter_dir,
    is_hub_id,
)
from scratchlm.modeling.weights import check_safetensors

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_device(name: str) -> str:
    """The device `--device NAME` names (auto: a CUDA GPU, else Apple's MPS, else the CPU); a ValueError for a
    device this machine lacks or a name that is not one."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name!r} is not a device: use one of {', '.join(DEVICES)}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: torch finds no CUDA GPU on this machine; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered "
                             "from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: Apple's MPS is not available on this machine; use --device cpu (or auto)")
    return name


def resolve_dtype(name: str) -> str | torch.dtype:
    """The torch dtype `--dtype NAME` names, or "auto" (the weights' saved dtype); a ValueError listing the valid
    names otherwise."""
    if name not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return name if name == "auto" else getattr(torch, name)


def check_model_dir(model_dir: str | Path) -> Path:
    """`model_dir` as a Path, when it holds a model (config.json) or a LoRA adapter (adapter_config.json)."""
    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise FileNotFoundError(f"{model_dir} does not exist: give a model directory")
    if not (model_dir / CONFIG_FILE).is_file() and not is_adapter_dir(model_dir):
        raise FileNotFoundError(f"{model_dir} holds no {CONFIG_FILE} (nor a LoRA adapter's {ADAPTER_CONFIG_FILE}): "
                                "not a model directory")
    return model_dir


def adapter_base(model_dir: Path) -> str | None:
    """The base model of a LoRA adapter directory, as its adapter_config.json records it (checked to exist when it is
    a local path); None for a full model directory."""
    if not is_adapter_dir(model_dir):
        return None
    config_file = model_dir / ADAPTER_CONFIG_FILE
    try:
        base = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (ValueError, AttributeError) as error:
        raise ValueError(f"{config_file} is not a JSON object of adapter settings: {error}") from None
    if not base:
        raise ValueError(f"{config_file} records no base model (base_model_name_or_path) to load the adapter onto")
    if Path(base).exists():
        if not (Path(base) / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"the base model {base} of the adapter {model_dir} holds no {CONFIG_FILE}: not a "
                                    "model directory")
    elif not is_hub_id(base):
        raise FileNotFoundError(f"the base model {base} of the adapter {model_dir} (base_model_name_or_path in "
                                f"{ADAPTER_CONFIG_FILE}) does not exist")
    return base


def model_config(model_dir: str | Path):
    """The config of the model in `model_dir` (of its base, for an adapter directory), read without the weights."""
    model_dir = check_model_dir(model_dir)
    return AutoConfig.from_pretrained(adapter_base(model_dir) or model_dir, trust_remote_code=True)


def causal_lm_config(model_dir: str | Path):
    """`model_config`, refused for an encoder-decoder: the caller needs a decoder-only (causal) language model."""
    config = model_config(model_dir)
    if config.is_encoder_decoder:
        raise ValueError(f"{model_dir} holds an encoder-decoder model ({config.model_type}); this command needs a "
                         "decoder-only (causal) language model (scratchlm-generate runs an encoder-decoder)")
    return config


def tokenizer_dir(model_dir: Path) -> Path | str:
    """Where the tokenizer of `model_dir` is: the directory itself, or the base model of an adapter directory saved
    without a tokenizer."""
    base = adapter_base(model_dir)
    return base if base and not (model_dir / TOKENIZER_CONFIG_FILE).is_file() else model_dir


def load_model(model_dir: str | Path, auto_class=AutoModelForCausalLM, device: str = "auto", dtype: str = "auto"):
    """(model, tokenizer) of `model_dir`, the model built by `auto_class`, in eval mode on `device`. An adapter
    directory loads its base and the adapter with peft, merged into the base weights (`merge_and_unload`)."""
    device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    model_dir = check_model_dir(model_dir)
    base = adapter_base(model_dir)
    check_safetensors(model_dir)
    if base:
        check_safetensors(base)
    model = auto_class.from_pretrained(base or model_dir, dtype=torch_dtype, trust_remote_code=True)
    if base:
        from peft import PeftModel

        with warnings.catch_warnings():  # peft 0.21 calls a method transformers 5.25 deprecates: not the user's to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            model = PeftModel.from_pretrained(model, model_dir).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir(model_dir), trust_remote_code=True)
    return model.to(device).eval(), tokenizer


def load_causal_lm(model_dir: str | Path, device: str = "auto", dtype: str = "auto"):
    """`load_model` for a decoder-only language model (chat, serve, export): an encoder-decoder is refused first."""
    resolve_device(device)  # the flags are checked before the directory
    resolve_dtype(dtype)
    causal_lm_config(model_dir)
    return load_model(model_dir, AutoModelForCausalLM, device, dtype)


def model_name(model_dir: str | Path) -> str:
    """The model's name for files made from it: its directory's name, or the run's for the `merged` directory of a
    LoRA run (`chat/merged` -> `chat`)."""
    path = Path(model_dir).resolve()
    return path.parent.name if path.name == MERGED_DIR and path.parent.name else path.name


def is_instruction_tuned(model_dir: str | Path, tokenizer) -> bool:
    """Whether replies should go through the chat template: a tokenizer with a template, and a run record (when
    there is one) of a chat-tuned run. A pretrained (base) model only continues text."""
    if not getattr(tokenizer, "chat_template", None):
        return False
    if not (Path(model_dir) / RUN_RECORD_FILE).is_file():
        return True
    return RunRecord.load(model_dir).is_instruction_tuned
