"""Publishing a trained ScratchLM model (or LoRA adapter) directory to the Hugging Face Hub: the library behind
`scratchlm-publish` and `--push_to_hub`.

The repository gets exactly what loading the model with stock transformers needs, staged in a local folder first
(`MODEL_DIR-hub` unless `--staging_dir` says otherwise):

- a full model, decoder (`scratchlm`) or encoder-decoder (`scratchlm_seq2seq`): `config.json` (with its `auto_map`),
  the safetensors weights, the code files the `auto_map` names and those they import (`configuration_scratchlm.py`,
  `modeling_scratchlm.py`, and for the encoder-decoder `configuration_scratchlm_seq2seq.py` and
  `modeling_scratchlm_seq2seq.py`), `generation_config.json`;
- a LoRA run saved as an adapter: `adapter_config.json` (its base model recorded) and `adapter_model.safetensors`;
- the tokenizer: `tokenizer.json`, `tokenizer_config.json` (with its `auto_map`), `tokenization_scratchlm.py`,
  and the chat template / special tokens files when present;
- the model card (`README.md`, rendered again from `scratchlm_run.json` so it names the repository) and the loss
  curve it shows.

Nothing else goes: no pickled files (training_args.bin, optimizer states, `.bin`/`.pt` weights), no checkpoints.
An `auto_map` may name only classes defined in ScratchLM's own code files in the directory (never another Hub
repository's code, `user/repo--module.Class`), and no staged file may be a link leading outside the directory.
`--dry-run` stages the folder and lists it without touching the network. The upload uses `huggingface_hub`
(`HfApi.create_repo`, then one `upload_folder` commit) with the token from `HF_TOKEN` or `hf auth login`; a
network or authentication failure raises `PublishError`, says what was (not) uploaded, and leaves the staged
folder in place to retry.
"""

from __future__ import annotations

import ast
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchlm.modeling.weights import check_safetensors_file

from .card import record_has_results, render_model_card, validate_model_card
from .run_record import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    CONFIG_FILE,
    GENERATION_CONFIG_FILE,
    LOSS_CURVE_FILE,
    MODEL_CARD_FILE,
    RUN_RECORD_FILE,
    SAFE_WEIGHTS_FILE,
    SAFE_WEIGHTS_INDEX_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    RunRecord,
    check_hub_id,
    is_hub_id,
)

logger = logging.getLogger(__name__)

OPTIONAL_TOKENIZER_FILES = ("special_tokens_map.json", "chat_template.jinja", "chat_template.json")
STAGING_MARKER = ".scratchlm_staging"
# The model types that can be published, and the Auto classes each must map to its code, so that each loads it with
# trust_remote_code=True: the decoder and the encoder-decoder.
REQUIRED_AUTO_CLASSES = {
    "scratchlm": ("AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification"),
    "scratchlm_seq2seq": ("AutoConfig", "AutoModel", "AutoModelForSeq2SeqLM"),
}
# ScratchLM's remote-code files (modeling/ and tokenization/): the only modules an auto_map may name.
REMOTE_CODE_MODULES = ("configuration_scratchlm", "modeling_scratchlm", "configuration_scratchlm_seq2seq",
                       "modeling_scratchlm_seq2seq", "tokenization_scratchlm")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class PublishError(ValueError):
    """Publishing failed: a bad model directory or repository id, or a failed upload (the message says which)."""


@dataclass
class PublishResult:
    repo_id: str
    staging_dir: Path
    files: list[Path]
    uploaded: bool
    url: str | None = None


# ----------------------------------------------------------------------------------------------------------------
# Checks


def validate_hub_repo_id(repo_id: str, *, require_namespace: bool = True) -> str:
    """Check a Hub model repository id (`user/name`); raises `PublishError` saying what is wrong."""
    try:
        return check_hub_id(repo_id, require_namespace=require_namespace)
    except ValueError as error:
        raise PublishError(str(error)) from None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PublishError(f"cannot read {what} {path}: {error}") from None
    if not isinstance(value, dict):
        raise PublishError(f"{what} {path} does not hold a JSON object")
    return value


def _parse_code(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as error:
        raise PublishError(f"cannot read the code file {path}: {error}") from None


def _defined_classes(path: Path) -> set[str]:
    return {node.name for node in _parse_code(path).body if isinstance(node, ast.ClassDef)}


def _auto_map_files(auto_map: dict[str, Any], model_dir: Path, config_file: str) -> set[str]:
    """The code files an `auto_map` points at (`"modeling_scratchlm.ScratchLMModel"` -> `modeling_scratchlm.py`).

    Each entry must name a class defined in one of ScratchLM's own remote-code files in `model_dir`: a reference to
    another Hub repository (`"user/repo--module.Class"`), any other module, or a class the file does not define is
    refused, since whoever loads the published model with trust_remote_code=True would run that code."""
    files = set()
    for auto_class, reference in auto_map.items():
        for item in reference if isinstance(reference, (list, tuple)) else [reference]:
            if item is None:  # a tokenizer's auto_map leaves the slow class empty
                continue
            module, _, class_name = str(item).rpartition(".")
            where = f"the auto_map entry {item!r} for {auto_class} in {model_dir / config_file}"
            if "--" in str(item):
                raise PublishError(f"{where} names code from another Hub repository; only the model's own code is "
                                   f"published: write {module.split('--')[-1]}.{class_name} instead")
            if module not in REMOTE_CODE_MODULES:
                raise PublishError(f"{where} names code outside the model directory's own ScratchLM code files "
                                   f"({', '.join(REMOTE_CODE_MODULES)}): only those are published")
            name = f"{module}.py"
            if (model_dir / name).is_file() and class_name not in _defined_classes(model_dir / name):
                raise PublishError(f"{where} names a class that {name} does not define")
            files.add(name)
    return files


def _with_relative_imports(model_dir: Path, names: set[str]) -> list[str]:
    """`names` and the code files they import relatively (`from .configuration_scratchlm import ...`), which stock
    transformers needs next to them to load the model."""
    pending, found = sorted(names), set()
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        if not (model_dir / name).is_file():
            continue  # reported by _check_files_exist
        pending += [f"{node.module}.py" for node in ast.walk(_parse_code(model_dir / name))
                    if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module]
    return sorted(found)


def _model_files(model_dir: Path) -> list[str]:
    """config.json, the safetensors weights, the model code files and the generation config of a full model."""
    config = _read_json(model_dir / CONFIG_FILE, "model config")
    model_type = config.get("model_type")
    if model_type not in REQUIRED_AUTO_CLASSES:
        raise PublishError(
            f"{model_dir} is not a ScratchLM model: its config.json has model_type {model_type!r}; scratchlm-publish "
            f"publishes {' and '.join(map(repr, REQUIRED_AUTO_CLASSES))} models (decoder and encoder-decoder)"
        )
    auto_map = config.get("auto_map") or {}
    missing_classes = [name for name in REQUIRED_AUTO_CLASSES[model_type] if name not in auto_map]
    if missing_classes:
        raise PublishError(
            f"{model_dir}/config.json has no auto_map entry for {', '.join(missing_classes)}, so stock transformers "
            "could not load it: save the model again after `import scratchlm` (which marks it for remote code)"
        )
    code = _with_relative_imports(model_dir, _auto_map_files(auto_map, model_dir, CONFIG_FILE))
    files = [CONFIG_FILE, *_safetensors_weights(model_dir), *code]
    if (model_dir / GENERATION_CONFIG_FILE).is_file():
        files.append(GENERATION_CONFIG_FILE)
    return files


def _safetensors_weights(model_dir: Path) -> list[str]:
    index = model_dir / SAFE_WEIGHTS_INDEX_FILE
    if index.is_file():
        shards = sorted(set(_read_json(index, "weights index").get("weight_map", {}).values()))
        return [SAFE_WEIGHTS_INDEX_FILE, *shards]
    if (model_dir / SAFE_WEIGHTS_FILE).is_file():
        return [SAFE_WEIGHTS_FILE]
    pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES and p.name != "training_args.bin")
    hint = (f" (found pickled weights {', '.join(pickles)}: load and save the model again with save_pretrained, "
            "which writes safetensors)") if pickles else ""
    raise PublishError(f"{model_dir} has no safetensors weights ({SAFE_WEIGHTS_FILE}){hint}")


def _check_weights_readable(model_dir: Path, names: list[str]) -> None:
    """Every safetensors file about to be staged is readable: a truncated or corrupt one is refused before anything
    is copied."""
    for name in names:
        if name.endswith(".safetensors"):
            try:
                check_safetensors_file(model_dir / name)
            except OSError as error:
                raise PublishError(str(error)) from None


def _adapter_base_model(model_dir: Path, base_model_id: str | None) -> str | None:
    """The Hub id of an adapter's base model: `base_model_id`, else the one its adapter_config.json records."""
    if base_model_id is not None or not (model_dir / ADAPTER_CONFIG_FILE).is_file():
        return base_model_id
    return _read_json(model_dir / ADAPTER_CONFIG_FILE, "adapter config").get("base_model_name_or_path")


def _adapter_files(model_dir: Path, base_model_id: str | None) -> list[str]:
    """adapter_config.json (with its base model) and the safetensors adapter weights of a LoRA run."""
    adapter_config = _read_json(model_dir / ADAPTER_CONFIG_FILE, "adapter config")
    if not (model_dir / ADAPTER_WEIGHTS_FILE).is_file():
        raise PublishError(f"{model_dir} has an adapter config but no {ADAPTER_WEIGHTS_FILE}")
    base = base_model_id or adapter_config.get("base_model_name_or_path")
    if not base:
        raise PublishError(
            f"{model_dir}/{ADAPTER_CONFIG_FILE} records no base model (base_model_name_or_path): pass "
            "--base_model_id USER/BASE, the Hub id of the model the adapter was trained on"
        )
    if base_model_id is None and not is_hub_id(base):
        raise PublishError(
            f"the adapter's base model is the local path {base!r}, which others cannot load: publish the base model "
            "first and pass its Hub id with --base_model_id USER/BASE"
        )
    return [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]


def _tokenizer_files(model_dir: Path) -> list[str]:
    """tokenizer.json, tokenizer_config.json, the tokenizer code file its auto_map names, and the optional files."""
    if not (model_dir / TOKENIZER_CONFIG_FILE).is_file() or not (model_dir / TOKENIZER_FILE).is_file():
        raise PublishError(
            f"{model_dir} has no tokenizer ({TOKENIZER_FILE} and {TOKENIZER_CONFIG_FILE}): save it next to the "
            "model with tokenizer.save_pretrained(MODEL_DIR)"
        )
    tokenizer_config = _read_json(model_dir / TOKENIZER_CONFIG_FILE, "tokenizer config")
    tokenizer_class = tokenizer_config.get("tokenizer_class")
    if not tokenizer_class:
        raise PublishError(f"{model_dir}/{TOKENIZER_CONFIG_FILE} names no tokenizer_class")
    auto_map = tokenizer_config.get("auto_map") or {}
    if tokenizer_class.startswith("ScratchLM") and "AutoTokenizer" not in auto_map:
        raise PublishError(
            f"{model_dir}/{TOKENIZER_CONFIG_FILE} has no auto_map for {tokenizer_class}, so stock transformers could "
            "not load it: save the tokenizer again after `import scratchlm.tokenization`"
        )
    code = _with_relative_imports(model_dir, _auto_map_files(auto_map, model_dir, TOKENIZER_CONFIG_FILE))
    files = [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, *code]
    return files + [name for name in OPTIONAL_TOKENIZER_FILES if (model_dir / name).is_file()]


def _check_files_exist(model_dir: Path, names: list[str]) -> None:
    missing = [name for name in names if not (model_dir / name).is_file()]
    if missing:
        raise PublishError(f"{model_dir} lacks {', '.join(missing)}, which the published model needs")


def _model_kind(model_dir: Path) -> str:
    if not model_dir.is_dir():
        raise PublishError(f"model directory {model_dir} does not exist")
    if (model_dir / CONFIG_FILE).is_file():
        return "model"
    if (model_dir / ADAPTER_CONFIG_FILE).is_file():
        return "adapter"
    raise PublishError(
        f"{model_dir} is not a ScratchLM model directory: it has neither config.json (a model) nor "
        f"{ADAPTER_CONFIG_FILE} (a LoRA adapter)"
    )


# ----------------------------------------------------------------------------------------------------------------
# Staging


def _prepare_staging_dir(staging_dir: Path, model_dir: Path) -> None:
    """Create (or empty, if a previous staging) the folder that mirrors the repository."""
    if staging_dir.resolve() == model_dir.resolve() or model_dir.resolve() in staging_dir.resolve().parents:
        raise PublishError(f"the staging folder {staging_dir} must be outside the model directory {model_dir}")
    if staging_dir.exists():
        if not staging_dir.is_dir():
            raise PublishError(f"staging folder {staging_dir} exists and is not a directory")
        if any(staging_dir.iterdir()) and not (staging_dir / STAGING_MARKER).is_file():
            raise PublishError(
                f"staging folder {staging_dir} is not empty and was not made by scratchlm-publish: choose another "
                "--staging_dir"
            )
        shutil.rmtree(staging_dir)
    staging_dir.mkdir(parents=True)
    (staging_dir / STAGING_MARKER).write_text("staged by scratchlm-publish; only the other files are uploaded\n")


def _card_files(model_dir: Path) -> list[str]:
    """The files of `model_dir` that go with the card: the loss curve it shows, and the card itself when there is no
    run record to render it from."""
    record_path = model_dir / RUN_RECORD_FILE
    if record_path.is_file():
        loss_curve = _read_json(record_path, "run record").get("loss_curve")
        return [loss_curve] if isinstance(loss_curve, str) and (model_dir / loss_curve).is_file() else []
    if (model_dir / MODEL_CARD_FILE).is_file():
        return [MODEL_CARD_FILE, *([LOSS_CURVE_FILE] if (model_dir / LOSS_CURVE_FILE).is_file() else [])]
    raise PublishError(f"{model_dir} has no model card ({MODEL_CARD_FILE}) and no run record ({RUN_RECORD_FILE})")


def _check_inside(model_dir: Path, names: list[str]) -> None:
    """Refuse a file that is a link to (or whose name leads to) a place outside `model_dir`: publishing uploads only
    what the model directory holds."""
    root = model_dir.resolve()
    for name in names:
        target = (model_dir / name).resolve()
        if not target.is_relative_to(root):
            raise PublishError(f"{model_dir / name} points to {target}, outside the model directory: only files in "
                               f"{model_dir} are published (copy the file there to publish it)")


def _stage_card(model_dir: Path, staging_dir: Path, repo_id: str | None, base_model_id: str | None,
                card_files: list[str]) -> None:
    """Write README.md (rendered from the run record when there is one, else the existing card) and the `card_files`,
    and check the card."""
    record_path = model_dir / RUN_RECORD_FILE
    if record_path.is_file():
        try:
            record = RunRecord.from_dict(_read_json(record_path, "run record"))
            card = render_model_card(record, model_dir, repo_id=repo_id, base_model=base_model_id)
            validate_model_card(card, require_results=record_has_results(record))
        except (ValueError, TypeError) as error:
            raise PublishError(f"cannot write the model card from {record_path}: {error}") from None
        card.save(staging_dir / MODEL_CARD_FILE)
    for name in card_files:
        shutil.copy2(model_dir / name, staging_dir / name)
    try:
        card = validate_model_card(staging_dir / MODEL_CARD_FILE, require_base_model=True)
    except ValueError as error:
        raise PublishError(f"model card of {model_dir}: {error}") from None
    if not card.data.language:
        logger.warning("the model card of %s names no language, so the Hub cannot list the model under one: "
                       "retrain with --language (e.g. --language zh en), or add `language:` to the card's metadata",
                       model_dir)


def _rewrite_adapter_base(staging_dir: Path, base_model_id: str) -> None:
    path = staging_dir / ADAPTER_CONFIG_FILE
    adapter_config = json.loads(path.read_text(encoding="utf-8"))
    adapter_config["base_model_name_or_path"] = base_model_id
    path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def default_staging_dir(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir).resolve()
    return model_dir.with_name(f"{model_dir.name}-hub")


def assemble_hub_folder(
    model_dir: str | Path,
    staging_dir: str | Path,
    *,
    repo_id: str | None = None,
    base_model_id: str | None = None,
) -> list[Path]:
    """Check `model_dir` and copy exactly what the Hub repository gets into `staging_dir`; returns those files.

    Raises `PublishError` when `model_dir` is not a ScratchLM model or adapter, lacks safetensors weights, its code
    files or its tokenizer, its `auto_map` names code other than its own, a file to stage is a link leading outside
    it, or its model card lacks required metadata. `staging_dir` is emptied first if it holds an
    earlier staging; any other non-empty folder is refused.
    """
    model_dir, staging_dir = Path(model_dir), Path(staging_dir)
    kind = _model_kind(model_dir)
    if base_model_id is not None:
        validate_hub_repo_id(base_model_id)
    names = _model_files(model_dir) if kind == "model" else _adapter_files(model_dir, base_model_id)
    if kind == "model" and (model_dir / ADAPTER_CONFIG_FILE).is_file():
        names += _adapter_files(model_dir, base_model_id)
    names += _tokenizer_files(model_dir)
    names = list(dict.fromkeys(names))
    card_files = _card_files(model_dir)
    _check_files_exist(model_dir, names)
    _check_inside(model_dir, [*names, *card_files])
    _check_weights_readable(model_dir, names)

    _prepare_staging_dir(staging_dir, model_dir)
    for name in names:
        shutil.copy2(model_dir / name, staging_dir / name)
    if base_model_id is not None and (staging_dir / ADAPTER_CONFIG_FILE).is_file():
        _rewrite_adapter_base(staging_dir, base_model_id)
    _stage_card(model_dir, staging_dir, repo_id, _adapter_base_model(model_dir, base_model_id), card_files)
    return [staging_dir / name for name in dict.fromkeys([*names, MODEL_CARD_FILE, *card_files])]


def format_file_list(files: list[Path]) -> str:
    lines = [f"  {path.name:<36} {_human_size(path.stat().st_size):>10}" for path in sorted(files)]
    total = sum(path.stat().st_size for path in files)
    return "\n".join([*lines, f"  {len(files)} files, {_human_size(total)}"])


def _human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


# ----------------------------------------------------------------------------------------------------------------
# Upload


def _upload_failure(error: Exception, repo_id: str, staging_dir: Path, repo_created: bool) -> PublishError:
    """A `PublishError` saying what went wrong, what reached the Hub, and where the staged folder is."""
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, OfflineModeIsEnabled):
        what = "the Hub is switched off in this environment (HF_HUB_OFFLINE is set); unset it to upload"
    elif isinstance(error, LocalTokenNotFoundError) or status == 401:
        what = "authentication failed: set HF_TOKEN to a token with write access, or run `hf auth login`"
    elif status == 403:
        what = f"the token may not write to {repo_id} (403 Forbidden): check the namespace and the token's rights"
    elif isinstance(error, HfHubHTTPError):
        what = f"the Hub answered with an error: {error}"
    elif isinstance(error, ValueError):
        what = f"the Hub refused the model card's metadata: {error}"
    else:
        what = f"could not reach the Hub ({type(error).__name__}: {error}); check the network connection"
    if repo_created:
        state = (f"The repository {repo_id} exists but no commit was made: none of these files were uploaded "
                 "(the upload is a single commit)")
    else:
        state = f"Nothing was uploaded and the repository {repo_id} was not created"
    return PublishError(f"publishing to {repo_id} failed: {what}. {state}. The staged folder is intact at "
                        f"{staging_dir}: run the command again to retry.")


def _network_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HTTPError,
        LocalTokenNotFoundError,
        OfflineModeIsEnabled,
    )

    errors: list[type[BaseException]] = [HfHubHTTPError, HTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled,
                                         ConnectionError, TimeoutError]
    try:
        import requests

        errors.append(requests.exceptions.RequestException)
    except ImportError:  # pragma: no cover - requests is optional for huggingface_hub 1.x
        pass
    return tuple(errors)


def upload_staged_folder(
    staging_dir: Path, files: list[Path], repo_id: str, *, private: bool = False, token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create the repository if needed and upload the staged files in one commit; returns the commit URL."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import LocalTokenNotFoundError

    repo_created = False
    try:
        token = token or get_token()
        if not token:
            raise LocalTokenNotFoundError("no Hugging Face token found")
        api = HfApi(token=token)
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        repo_created = True
        try:
            commit = api.upload_folder(
                repo_id=repo_url.repo_id,
                folder_path=staging_dir,
                repo_type="model",
                allow_patterns=[path.name for path in files],
                commit_message=commit_message or "Upload ScratchLM model",
            )
        except ValueError as error:  # the Hub's check of the README.md metadata (validate-yaml) failed
            raise _upload_failure(error, repo_id, staging_dir, repo_created) from error
    except _network_errors() as error:
        raise _upload_failure(error, repo_id, staging_dir, repo_created) from error
    return str(getattr(commit, "commit_url", commit))


def publish(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    token: str | None = None,
    staging_dir: str | Path | None = None,
    base_model_id: str | None = None,
    commit_message: str | None = None,
    require_namespace: bool = True,
) -> PublishResult:
    """Stage `model_dir` for the Hub and upload it to `repo_id` (only stage it, with `dry_run`).

    The staging folder defaults to `MODEL_DIR-hub` next to the model directory. Everything is checked before any
    network call; failures raise `PublishError`.
    """
    validate_hub_repo_id(repo_id, require_namespace=require_namespace)
    staging_dir = Path(staging_dir) if staging_dir is not None else default_staging_dir(model_dir)
    files = assemble_hub_folder(model_dir, staging_dir, repo_id=repo_id, base_model_id=base_model_id)
    if dry_run:
        return PublishResult(repo_id=repo_id, staging_dir=staging_dir, files=files, uploaded=False)
    url = upload_staged_folder(staging_dir, files, repo_id, private=private, token=token,
                               commit_message=commit_message)
    return PublishResult(repo_id=repo_id, staging_dir=staging_dir, files=files, uploaded=True, url=url)
