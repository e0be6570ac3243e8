"""Checks of saved weights that every command can use before loading them (not remote code: never copied with a
model)."""

from __future__ import annotations

from pathlib import Path


def check_safetensors(model_dir: str | Path) -> None:
    """An OSError naming the first `*.safetensors` file of the local directory `model_dir` whose header and data do
    not hold together (a file cut while it was copied or written); nothing for a Hub id or a directory without one.
    Reads only the headers."""
    from safetensors import SafetensorError, safe_open

    directory = Path(model_dir)
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError) as error:
            raise OSError(f"{path} is truncated or corrupt ({error}): copy or save the model again") from None
