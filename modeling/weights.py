"""Checks of saved weights that every command can use before loading them: training, inference, conversion and
publishing (not remote code: never copied with a model)."""

from __future__ import annotations

from pathlib import Path


def check_safetensors_file(path: str | Path) -> None:
    """An OSError naming the safetensors file `path` when its header and data do not hold together (a file cut while
    it was copied or written). Reads the header and every tensor's entry, not the data."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # safe_open handles are not iterable
                handle.get_slice(key)
    except (SafetensorError, OSError) as error:
        raise OSError(f"{path} is truncated or corrupt ({error}): copy or save the model again") from None


def check_safetensors(model_dir: str | Path) -> None:
    """`check_safetensors_file` on every `*.safetensors` file of the local directory `model_dir` (weights, shards,
    adapter weights); nothing for a Hub id or a directory without one."""
    directory = Path(model_dir)
    if directory.is_dir():
        for path in sorted(directory.glob("*.safetensors")):
            check_safetensors_file(path)
