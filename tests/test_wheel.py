"""The package as users install it: a wheel built from what a clone holds, installed (not editable) into a fresh
venv, runs the README's whole path with its console scripts, in a directory outside the repository. An editable
install reads files from the checkout and so hides package data missing from the wheel (metric scripts, the card
template, ...). The fresh venv takes its dependencies from the test's own environment through a `.pth` file."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["modeling", "tokenization", "training", "model_cards", "inference", "scratchlm"]  # folder -> scratchlm/...

CORPUS = [
    "The quick brown fox jumps over the lazy dog, and the dog sleeps on in the sun.",
    "It was the best of times, it was the worst of times; the numbers 2019 and 3.14 came and went.",
    "春风又绿江南岸，明月何时照我还。床前明月光，疑是地上霜。",
    "She sells sea shells by the sea shore. We have been told they will come, and you would like some tea.",
]


def clone_files() -> list[str]:
    """What a fresh clone (plus this checkout's new files) holds: no build leftovers, no venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def build_wheel(work: Path, files: list[str]) -> Path:
    source = work / "source"
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(work / "dist"), str(source)], check=True, capture_output=True, text=True)
    (wheel,) = (work / "dist").glob("scratchlm-*.whl")
    return wheel


def fresh_venv_with(wheel: Path, venv: Path) -> Path:
    """A new venv with `wheel` installed in it and this environment's packages (not its editable `scratchlm`)
    importable; returns its bin/."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Installed before the dependencies are visible, so pip sees no other scratchlm to replace.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, text=True)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    # A path line in a .pth only extends sys.path: the .pth files there (the editable install's hook) are not run.
    (Path(site) / "dependencies.pth").write_text("".join(f"{path}\n" for path in ours), encoding="utf-8")
    return venv / "bin"


def write_inputs(work: Path) -> None:
    (work / "corpus").mkdir()
    for index in range(2):
        lines = [f"{sentence} ({index}.{n})" for n in range(40) for sentence in CORPUS]
        (work / "corpus" / f"part{index}.txt").write_text("\n\n".join(lines), encoding="utf-8")
    with open(work / "train.csv", "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([("text", "label"), *[("a good film, I loved it", 1), ("bad, boring, long", 0)] * 8])
    records = [{"instruction": "Say hi.", "input": "", "output": "Hi there."},
               {"instruction": "Name a colour.", "input": "", "output": "Blue."}] * 8
    (work / "alpaca.json").write_text(json.dumps(records), encoding="utf-8")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin/ of the fresh venv, the wheel, the files it was built from)."""
    work = tmp_path_factory.mktemp("wheel")
    files = clone_files()
    wheel = build_wheel(work, files)
    return fresh_venv_with(wheel, work / "venv"), wheel, files


def test_the_wheel_holds_every_file_of_the_package(installed):
    _, wheel, files = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"scratchlm/{name}" if not name.startswith("scratchlm/") else name
                for name in files if name.split("/")[0] in STAGES and "__pycache__" not in name}
    assert expected and expected <= names, f"missing from the wheel: {sorted(expected - names)}"


def test_the_readme_path_runs_from_the_installed_wheel(installed, tmp_path):
    bin_dir, *_ = installed
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), OMP_NUM_THREADS="1",
                       TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error",
                       PATH=f"{bin_dir}{os.pathsep}{environment.get('PATH', '')}")

    def run(*commands: tuple[str, ...], stdin: str = "") -> list[str]:
        """Run the commands side by side (they are independent), each with `stdin`; returns their outputs."""
        started = []
        for index, (name, *argv) in enumerate(commands):
            log = tmp_path / f"{name}-{index}.log"
            with open(log, "w") as output:
                process = subprocess.Popen([str(bin_dir / name), *argv], cwd=tmp_path, env=environment,
                                           stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT, text=True)
            process.stdin.write(stdin)
            process.stdin.close()
            started.append((process, log, " ".join([name, *argv])))
        for process, log, command in started:
            assert process.wait(timeout=300) == 0, f"{command} failed:\n{log.read_text()[-3000:]}"
        return [log.read_text() for _, log, _ in started]

    where = subprocess.run([str(bin_dir / "python"), "-c", "import scratchlm.training.evaluation as m; print(m.__file__)"],
                           cwd=tmp_path, env=environment, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(bin_dir.parent)), f"scratchlm imported from {where}, not from the installed wheel"

    write_inputs(tmp_path)
    training = ("--max_steps", "2", "--report_to", "none", "--per_device_train_batch_size", "2")
    no_samples = ("--num_samples", "0")  # only the commands that generate samples take it
    run(("scratchlm-tokenizer", "--train_files", "corpus/*.txt", "--vocab_size", "300", "--output_dir", "tok/"))
    run(("scratchlm-init", "--preset", "tiny", "--tokenizer_name_or_path", "tok/", "--output_dir", "init/",
         "--config_overrides", "max_position_embeddings=64,num_hidden_layers=1"))
    run(("scratchlm-pretrain", "--train_files", "corpus/*.txt", "--model_name_or_path", "init/", "--output_dir", "lm/",
         "--block_size", "32", *training, *no_samples))
    _, _, listing = run(
        ("scratchlm-finetune", "--task", "classification", "--model_name_or_path", "lm/", "--train_files", "train.csv",
         "--method", "lora", "--output_dir", "clf/", *training),
        ("scratchlm-finetune", "--task", "sft", "--model_name_or_path", "lm/", "--train_files", "alpaca.json",
         "--method", "lora", "--merge", "--output_dir", "chat/", *training, *no_samples),
        ("scratchlm-publish", "lm/", "--repo_id", "you/scratchlm-tiny", "--dry_run"),
    )
    (tmp_path / "prompts.txt").write_text("To be\n", encoding="utf-8")
    *_, chat = run(
        ("scratchlm-generate", "--model_name_or_path", "chat/merged", "--input_file", "prompts.txt", "--output_file",
         "out.txt", "--max_new_tokens", "4"),
        ("scratchlm-export", "chat/merged", "--format", "gguf", "--outtype", "f16", "--output_file", "chat.gguf"),
        ("scratchlm-chat", "chat/merged", "--max_new_tokens", "4"),
        stdin="hi\n",  # `echo hi | scratchlm-chat ...`; the others do not read it
    )

    assert (tmp_path / "lm" / "model.safetensors").is_file() and "README.md" in listing
    assert "Accuracy" in (tmp_path / "clf" / "README.md").read_text(encoding="utf-8")  # the card, from the metrics
    assert "eval_accuracy" in json.loads((tmp_path / "clf" / "metrics.json").read_text(encoding="utf-8"))
    assert (tmp_path / "chat" / "merged" / "model.safetensors").is_file()
    assert len((tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()) == 1
    assert (tmp_path / "chat.gguf").read_bytes()[:4] == b"GGUF"
    assert "chatting with chat/merged" in chat
