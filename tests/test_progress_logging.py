"""Runs people can follow (issue 14, point 12, and point 9 end to end): a training command writing to a pipe (a log
file, CI) prints one progress line per logging step instead of blank or run-together progress-bar lines, and its
routine messages are INFO, not WARNING. The same run, on Chinese text without --language, records `zh`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from scratchlm.model_cards.run_record import RUN_RECORD_FILE

POEMS = ["春风又绿江南岸，明月何时照我还。", "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
         "大江东去，浪淘尽，千古风流人物。", "明月几时有，把酒问青天。不知天上宫阙，今夕是何年。",
         "这家店的外卖很好吃，送餐也很快，下次还会再点。", "味道一般，送得太慢了，饭都凉了。"]


def test_pretraining_into_a_pipe_logs_progress_lines_at_info(tiny_causal_lm_dir, tmp_path):
    corpus = tmp_path / "poems.txt"
    corpus.write_text("\n".join(f"{poem}{poem[:i % 7]}" for i in range(120) for poem in POEMS[i % 6:i % 6 + 1]),
                      encoding="utf-8")
    output_dir = tmp_path / "run"
    command = [
        str(Path(sys.executable).with_name("scratchlm-pretrain")), "--train_files", str(corpus), "--sample_by", "line",
        "--tokenizer_name_or_path", str(tiny_causal_lm_dir), "--preset", "tiny",
        "--config_overrides", "max_position_embeddings=64,num_hidden_layers=1,hidden_size=64,intermediate_size=128",
        "--block_size", "32", "--per_device_train_batch_size", "4", "--max_steps", "6", "--logging_steps", "2",
        "--eval_steps", "6", "--save_steps", "6", "--num_samples", "1", "--sample_max_new_tokens", "4",
        "--report_to", "none", "--output_dir", str(output_dir), "--data_cache_dir", str(tmp_path / "cache"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            timeout=300, check=False)
    output = result.stdout
    assert result.returncode == 0, output

    # no progress bars: no carriage returns, no tqdm bars, no lines that are only blanks
    assert "\r" not in output
    assert not re.search(r"\d+%\|", output), output
    assert not [line for line in output.split("\n") if line and not line.strip()]
    # one progress line per logging step, through logging at INFO
    progress = re.findall(r"^INFO scratchlm\.training\.callbacks: step (\d+)/6 \(\d+%\)", output, flags=re.M)
    steps = [int(step) for step in progress]
    assert {2, 4, 6} <= set(steps) and steps == sorted(steps), output
    # routine messages are INFO, not WARNING
    assert re.search(r"^INFO scratchlm\.training\.pretrain: [\d,]+ parameters;", output, flags=re.M), output
    assert not re.search(r"^WARNING scratchlm\.training\.pretrain: [\d,]+ parameters", output, flags=re.M)

    record = json.loads((output_dir / RUN_RECORD_FILE).read_text(encoding="utf-8"))
    assert record["language"] == ["zh"] and record["language_inferred"] is True  # no --language given
    assert "language:\n- zh" in (output_dir / "README.md").read_text(encoding="utf-8")
