#!/usr/bin/env bash
# The prepared GPU check (benchmarks/README.md, "GPU check"): each step has a time limit, 8 minutes in all with the
# install (the steps are sized for about 4 on one H100):
#   1. the machine: a CUDA GPU and what the commands import (one line naming what is missing otherwise);
#   2. a synthetic corpus, a tokenizer trained on it, a `small` model from scratchlm-init;
#   3. FSDP2 through the command: scratchlm-pretrain under `accelerate launch --config_file
#      configs/accelerate/fsdp2.yaml`, a few steps, sharded checkpoints; then a run with
#      --fsdp_state_dict_type FULL_STATE_DICT, whose directory must load with from_pretrained;
#   4. the sharded-checkpoint round trip: the last checkpoint -> accelerate's merge_fsdp_weights -> a model directory
#      -> from_pretrained (docs/scale-out.md's recipe), its loss against the untrained model's;
#   5. bf16 MFU of the `125m` preset, eager and compiled (tokens/s x 6 x parameters / the GPU's peak).
# Writes gpu_check.json (everything) and the logs of the steps into OUT_DIR.
#
# usage: benchmarks/gpu_check.sh OUT_DIR [--peak_tflops N]    (PYTHON=... picks the interpreter; default python3)
set -euo pipefail

usage="usage: benchmarks/gpu_check.sh OUT_DIR [--peak_tflops N]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
OUT=$1
shift
PEAK=()
while [ $# -gt 0 ]; do
  case $1 in
    --peak_tflops) [ $# -ge 2 ] || { echo "gpu_check.sh: error: --peak_tflops needs a number" >&2; exit 2; }
                   PEAK=(--peak_tflops "$2"); shift 2 ;;
    *) echo "gpu_check.sh: error: unknown option $1 ($usage)" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || { echo "gpu_check.sh: error: no Python at '$PYTHON' (set PYTHON)" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=warning
CHECK="$ROOT/benchmarks/gpu_check.py"
step() { echo "== $* ($(date +%T))"; }
# A step that fails stops the check with its name and the end of its log.
run_step() {
  local name=$1 limit=$2
  shift 2
  if ! timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
    echo "gpu_check.sh: error: step '$name' failed or ran past ${limit}s; the end of $OUT/$name.log:" >&2
    tail -n 30 "$OUT/$name.log" >&2
    exit 1
  fi
}

step "1/5 the machine"
if ! "$PYTHON" -c "import scratchlm.training.pretrain" 2>/dev/null; then
  # a bare machine: install this checkout (no dependencies: they must already be there) beside the work files
  timeout 30 "$PYTHON" -m pip install -q --no-deps --no-build-isolation --target "$WORK/site" "$ROOT" >"$OUT/install.log" 2>&1 \
    || { echo "gpu_check.sh: error: installing ScratchLM failed (see $OUT/install.log)" >&2; exit 1; }
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PYTHON" "$CHECK" machine --json "$WORK/machine.json"

step "2/5 corpus, tokenizer, model"
run_step prepare 60 bash -c "
  set -euo pipefail
  '$PYTHON' '$CHECK' corpus '$WORK/corpus.txt' --megabytes 4
  '$PYTHON' -m scratchlm.tokenization.cli --train_files '$WORK/corpus.txt' --vocab_size 8192 --output_dir '$WORK/tok'
  '$PYTHON' -c 'from scratchlm.modeling.cli import init_main; init_main()' --preset small \
    --tokenizer_name_or_path '$WORK/tok' --output_dir '$WORK/init'"

step "3/5 FSDP2 through scratchlm-pretrain (accelerate launch, configs/accelerate/fsdp2.yaml, 1 GPU)"
started=$(date +%s)
run_step pretrain_fsdp2 110 "$PYTHON" -m accelerate.commands.launch --config_file "$ROOT/configs/accelerate/fsdp2.yaml" \
  --num_processes 1 -m scratchlm.training.pretrain \
  --train_files "$WORK/corpus.txt" --model_name_or_path "$WORK/init" --output_dir "$WORK/run" \
  --max_steps 40 --save_steps 20 --eval_steps 40 --logging_steps 10 --per_device_train_batch_size 16 \
  --learning_rate 1e-3 --num_samples 0 --report_to none
pretrain_seconds=$(( $(date +%s) - started ))
# the other path to a finished model: checkpoints and the final save gathered whole (docs/scale-out.md)
run_step pretrain_fsdp2_full 80 "$PYTHON" -m accelerate.commands.launch \
  --config_file "$ROOT/configs/accelerate/fsdp2.yaml" --fsdp_state_dict_type FULL_STATE_DICT \
  --num_processes 1 -m scratchlm.training.pretrain \
  --train_files "$WORK/corpus.txt" --model_name_or_path "$WORK/init" --output_dir "$WORK/run_full" \
  --max_steps 10 --save_steps 10 --eval_steps 10 --per_device_train_batch_size 16 --num_samples 0 --report_to none
ls "$WORK/run" "$WORK/run"/checkpoint-* "$WORK/run_full" >"$OUT/run_files.txt" 2>&1 || true

step "4/5 sharded checkpoint -> merge_fsdp_weights -> from_pretrained"
last=$(ls -dv "$WORK/run"/checkpoint-* 2>/dev/null | tail -n 1)
[ -n "$last" ] || { echo "gpu_check.sh: error: the FSDP2 run left no checkpoint-N in its output" >&2; exit 1; }
run_step merge 60 "$PYTHON" "$CHECK" merge --json "$WORK/merge.json" --checkpoint "$last" --init_dir "$WORK/init" \
  --run_dir "$WORK/run" --corpus "$WORK/corpus.txt" --work_dir "$WORK/merged"

step "5/5 bf16 MFU of the 125m preset"
run_step mfu_eager 60 "$PYTHON" "$CHECK" mfu --json "$WORK/mfu_eager.json" ${PEAK[@]+"${PEAK[@]}"}
# compiled: recorded when it works, its failure only noted (the eager figure stands on its own)
timeout 80 "$PYTHON" "$CHECK" mfu --json "$WORK/mfu_compiled.json" --compile ${PEAK[@]+"${PEAK[@]}"} \
  >"$OUT/mfu_compiled.log" 2>&1 || echo '{"error": "the compiled run failed or ran past 80 s (mfu_compiled.log)"}' \
  >"$WORK/mfu_compiled.json"

"$PYTHON" - "$WORK" "$OUT/gpu_check.json" "$pretrain_seconds" <<'EOF'
import json, sys
from pathlib import Path
work, out, seconds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
read = lambda name: json.loads((work / name).read_text())
record = read("run/scratchlm_run.json") if (work / "run/scratchlm_run.json").is_file() else {}
try:  # the FULL_STATE_DICT run's directory, loaded as a user would
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(work / "run_full", trust_remote_code=True)
    full_run = {"model_safetensors": (work / "run_full/model.safetensors").is_file(), "from_pretrained": "loads"}
except Exception as error:  # recorded, not raised: the summary is written either way
    full_run = {"model_safetensors": (work / "run_full/model.safetensors").is_file(), "from_pretrained": repr(error)}
summary = {
    "machine": read("machine.json"),
    "fsdp2_pretrain": {"seconds_with_startup": seconds, "global_step": record.get("global_step"),
                       "train_losses": record.get("train_losses"), "metrics": record.get("metrics"),
                       "hyperparameters": record.get("hyperparameters")},
    "sharded_round_trip": read("merge.json"),
    "full_state_dict_run": full_run,
    "mfu_125m_bf16_eager": read("mfu_eager.json"),
    "mfu_125m_bf16_compiled": read("mfu_compiled.json"),
}
out.write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps({k: summary[k] for k in ("sharded_round_trip", "full_state_dict_run", "mfu_125m_bf16_eager",
                                          "mfu_125m_bf16_compiled")},
                 indent=2))
EOF
step "done: $OUT/gpu_check.json"
