"""One direction of travel between the layers (docs/architecture.md): each module imports only the layers below it.
Read from the source with `ast` (lazy imports inside functions count too), nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("corpus", "modeling", "tokenization", "training", "inference", "model_cards")


def module_name(path: Path) -> str:
    """The dotted name a source file is imported under: the top-level folders install as `scratchlm.<folder>`."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join(parts if parts[0] == "scratchlm" else ("scratchlm", *parts))


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module or module.name) of every import in a source file, relative ones resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def forbidden_imports(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    """'file:line imports X' for each import of a module under one of the `forbidden` dotted prefixes."""
    return [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in files for line, name in imports(path)
            if any(name == prefix or name.startswith(f"{prefix}.") for prefix in forbidden)]


def sources(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no sources under {folder}/"
    return files


def test_the_import_reader_resolves_relative_imports():
    assert module_name(ROOT / "training" / "data" / "qa.py") == "scratchlm.training.data.qa"
    assert module_name(ROOT / "scratchlm" / "cli.py") == "scratchlm.cli"
    names = [name for _, name in imports(ROOT / "training" / "data" / "qa.py")]
    assert "scratchlm.training.data.tables.load_table" in names  # `from .tables import load_table`
    names = [name for _, name in imports(ROOT / "training" / "data" / "cloze.py")]
    assert "scratchlm.training.data.qa.load_squad" in names


def test_inference_imports_no_training_module():
    assert not forbidden_imports(sources("inference"), ("scratchlm.training",))


def test_modeling_imports_no_stage_above_it():
    assert not forbidden_imports(sources("modeling"), ("scratchlm.training", "scratchlm.inference",
                                                       "scratchlm.model_cards"))


def test_the_argument_layer_imports_no_stage():
    """scratchlm/cli.py and scratchlm/files.py are the shared base below every stage."""
    files = [ROOT / "scratchlm" / "cli.py", ROOT / "scratchlm" / "files.py"]
    assert not forbidden_imports(files, tuple(f"scratchlm.{stage}" for stage in STAGES))


@pytest.mark.parametrize("folder", ["corpus", "training/data"])
def test_no_data_module_imports_an_arguments_class(folder):
    """Data modules take typed settings of their own; the commands turn flags into them."""
    uses = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in sources(folder)
            for line, name in imports(path)
            if name.endswith("Arguments") or name.startswith("scratchlm.training.arguments")]
    assert not uses


def test_the_corpus_stage_imports_no_other_stage():
    """The corpus is the bottom stage: it reads, cleans and stores text for the stages above it."""
    others = tuple(f"scratchlm.{stage}" for stage in STAGES if stage != "corpus")
    assert not forbidden_imports(sources("corpus"), others)


def test_only_the_tokenizer_trainer_reads_the_corpus_in_tokenization():
    """The tokenizer class travels as remote code and reads nothing; the training command reads the corpus."""
    users = {path.name for path in sources("tokenization") if forbidden_imports([path], ("scratchlm.corpus",))}
    assert users <= {"cli.py", "train.py"}
