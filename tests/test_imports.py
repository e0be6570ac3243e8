"""The package uses only public APIs of the libraries it builds on: a private module or name (`transformers.cli`,
`*.utils.import_utils`, an underscore name) or an attribute set on their modules breaks on a minor release upstream
(issue 27: transformers 5.25 broke `scratchlm-serve` this way). Read from the source with `ast`, nothing imported.
And a deprecation warning caused by a call in our modules fails the suite (pyproject.toml's filterwarnings)."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ["modeling", "tokenization", "training", "inference", "model_cards", "scratchlm"]
LIBRARIES = {"transformers", "peft", "trl", "accelerate", "datasets", "huggingface_hub", "evaluate"}

# (file, what it uses) -> why no public API does it, and which test pins the behaviour relied on. Keep it short.
ALLOWED: dict[tuple[str, str], str] = {}


def is_private_part(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))  # `__version__` is public


def why_private(dotted: str) -> str | None:
    """Why the dotted path `dotted` (a module, or a module and a name) is private, or None."""
    parts = dotted.split(".")
    if any(is_private_part(part) for part in parts):
        return "an underscore name"
    if parts[:2] == ["transformers", "cli"]:
        return "transformers' command-line code (transformers.cli), not a library API"
    if "import_utils" in parts:
        return "an internal helper module (utils.import_utils)"
    return None


class LibraryUses(ast.NodeVisitor):
    """Each use of a library in one module, as (line, dotted path, how): imports, attribute chains on an imported
    library name, `getattr(lib, "_x")`, `setattr(lib, ...)` / `lib.x = ...`, `importlib.import_module("lib.x")`."""

    def __init__(self) -> None:
        self.bound: dict[str, str] = {}  # local name -> the library path it stands for
        self.uses: list[tuple[int, str, str]] = []

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top in LIBRARIES:
                self.uses.append((node.lineno, alias.name, "import"))
                self.bound[alias.asname or top] = alias.name if alias.asname else top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module or node.module.split(".")[0] not in LIBRARIES:
            return
        self.uses.append((node.lineno, node.module, "import"))
        for alias in node.names:
            self.uses.append((node.lineno, f"{node.module}.{alias.name}", "import"))
            self.bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def resolve(self, node: ast.expr) -> str | None:
        """The library path an expression like `transformers.cli.serve` stands for, or None."""
        if isinstance(node, ast.Name):
            return self.bound.get(node.id)
        if isinstance(node, ast.Attribute) and (base := self.resolve(node.value)):
            return f"{base}.{node.attr}"
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if (path := self.resolve(node)) is not None:
            self.uses.append((node.lineno, path, "attribute"))
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                self.uses.append((node.lineno, path, "sets an attribute of"))
            return  # the inner part of the chain is a prefix of this path
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        first = node.args[0] if node.args else None
        second = node.args[1] if len(node.args) > 1 else None
        if function in ("getattr", "hasattr", "setattr", "delattr") and first is not None:
            if (base := self.resolve(first)) is not None:
                name = second.value if isinstance(second, ast.Constant) and isinstance(second.value, str) else "<name>"
                how = "sets an attribute of" if function in ("setattr", "delattr") else function
                self.uses.append((node.lineno, f"{base}.{name}", how))
        if function == "import_module" and isinstance(first, ast.Constant) and isinstance(first.value, str):
            if first.value.split(".")[0] in LIBRARIES:
                self.uses.append((node.lineno, first.value, "import"))
        self.generic_visit(node)


def library_uses(source: str) -> list[tuple[int, str, str]]:
    visitor = LibraryUses()
    visitor.visit(ast.parse(source))
    return visitor.uses


def private_uses(source: str) -> list[tuple[int, str, str]]:
    """(line, dotted path, why) for each private use in `source`."""
    found = []
    for line, path, how in library_uses(source):
        if how == "sets an attribute of":
            found.append((line, path, f"sets an attribute of {path.rsplit('.', 1)[0]}"))
        elif why := why_private(path):
            found.append((line, path, why))
    return found


def package_files() -> list[Path]:
    return sorted(path for folder in PACKAGE_DIRS for path in (ROOT / folder).rglob("*.py"))


def test_the_package_uses_no_private_api_of_the_libraries():
    found = {}  # one line per place and path
    for path in package_files():
        relative = path.relative_to(ROOT).as_posix()
        for line, dotted, why in private_uses(path.read_text(encoding="utf-8")):
            if (relative, dotted) not in ALLOWED:
                found.setdefault(f"{relative}:{line}: {dotted}", why)
    assert not found, "private APIs used (use a public one, or allow-list it with the why):\n" + "\n".join(
        f"{where} ({why})" for where, why in found.items())


def test_the_allow_list_names_only_uses_that_exist():
    present = {(path.relative_to(ROOT).as_posix(), dotted) for path in package_files()
               for _, dotted, _ in private_uses(path.read_text(encoding="utf-8"))}
    assert set(ALLOWED) <= present, f"stale allow-list entries: {sorted(set(ALLOWED) - present)}"


def test_the_check_sees_the_package_imports():
    """A check that finds nothing because it reads nothing passes too: it must see the imports we know exist."""
    seen = {dotted for path in package_files() for _, dotted, _ in library_uses(path.read_text(encoding="utf-8"))}
    assert {"transformers.HfArgumentParser", "transformers.AutoTokenizer", "peft", "datasets"} <= seen


def test_each_private_pattern_is_flagged():
    source = """
import transformers
import transformers.cli.serve
import transformers.utils.import_utils as iu
from transformers.cli.serving import chat_completion
from transformers.utils.import_utils import is_serve_available
from transformers.modeling_utils import _init_weights
from peft.tuners._buffer_dict import BufferDict
from trl import _compat
import importlib
from datasets import Dataset, __version__, load_dataset

setattr(transformers, "ScratchLMForCausalLM", object)
transformers.ScratchLMConfig = object
getattr(transformers, "_private")
transformers._hidden.call()
importlib.import_module("accelerate._private")
load_dataset("x")
"""
    flagged = {(line, dotted) for line, dotted, _ in private_uses(source)}
    expected = {
        (3, "transformers.cli.serve"), (4, "transformers.utils.import_utils"), (5, "transformers.cli.serving"),
        (5, "transformers.cli.serving.chat_completion"), (6, "transformers.utils.import_utils"),
        (6, "transformers.utils.import_utils.is_serve_available"), (7, "transformers.modeling_utils._init_weights"),
        (8, "peft.tuners._buffer_dict"), (8, "peft.tuners._buffer_dict.BufferDict"), (9, "trl._compat"),
        (13, "transformers.ScratchLMForCausalLM"), (14, "transformers.ScratchLMConfig"),
        (15, "transformers._private"), (16, "transformers._hidden.call"),
        (17, "accelerate._private"),
    }
    assert flagged == expected


def warn_from(module: str, category: type[Warning]) -> None:
    """Warn as code of `module` does: Python attributes a warning to the module of the frame `stacklevel` names."""
    exec(compile(f"import warnings\nwarnings.warn('going away', {category.__name__})", "source.py", "exec"),
         {"__name__": module})


@pytest.mark.parametrize("category", [FutureWarning, DeprecationWarning])
def test_a_deprecation_from_our_modules_fails_the_suite(category):
    for module in ("scratchlm.training.finetune", "transformers_modules.lm.modeling_scratchlm"):
        with pytest.raises(category):
            warn_from(module, category)
    with pytest.warns(FutureWarning):  # a library's own call stays a warning (theirs to fix)
        warn_from("peft.peft_model", FutureWarning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # what a test of a deliberate deprecation does
        warn_from("scratchlm.cli", category)
    assert [w.category for w in caught] == [category]
