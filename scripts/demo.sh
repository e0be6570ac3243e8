#!/usr/bin/env bash
# The main job: tokenizer + pretraining on tinyshakespeare, evaluation, a loadable model with its loss curve,
# card and sample generations in outputs/shakespeare. Extra arguments go to scratchlm-pretrain, e.g.
#   make demo ARGS="--max_steps 300"                       # a shorter run
#   make demo ARGS="--dataset_name karpathy/tiny_shakespeare"   # from the Hub, when online
# SCRATCHLM_DATA points at another copy of the shared data sets (default: ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
SOURCE=()
if [[ " $* " != *" --dataset_name "* ]]; then
  CORPUS="${SCRATCHLM_DATA:-../shared/data}/tinyshakespeare/input.txt"
  if [ ! -f "$CORPUS" ]; then
    echo "tinyshakespeare not found at $CORPUS: set SCRATCHLM_DATA to the folder holding tinyshakespeare/" >&2
    exit 1
  fi
  SOURCE=(--train_files "$CORPUS")
fi
"$VENV/bin/scratchlm-pretrain" --config configs/pretrain-shakespeare.yaml "${SOURCE[@]}" "$@"
echo
echo "Load it:  $VENV/bin/python -c \"from transformers import pipeline; print(pipeline('text-generation', model='outputs/shakespeare', trust_remote_code=True)('ROMEO:', max_new_tokens=40)[0]['generated_text'])\""
echo "Loss curve: outputs/shakespeare/loss_curve.png   TensorBoard: tensorboard --logdir outputs/shakespeare/runs"
