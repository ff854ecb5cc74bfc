#!/usr/bin/env bash
# Training throughput on a lent GPU (a few minutes): the ranker (DeBERTa-v3-large-sized, bf16, one GPU) and the
# fuser (flan-t5-base-sized, bf16, ZeRO-2 with optimizer offload), each through blender's loop, written to
# $OUT/gpu_check_{ranker,fuser}.json (default bench/gpu_check). Models come from configs: nothing is downloaded.
#   scripts/gpu_check.sh                 # on the GPU machine, after `make setup TORCH=torch`
#   scripts/gpu_check.sh --tiny          # CPU dry run of the same commands (toy sizes; numbers mean nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/gpu_check}
ACCELERATE=${ACCELERATE:-.venv/bin/accelerate}
export HF_HUB_OFFLINE=1
if [[ "${1:-}" == "--tiny" ]]; then
  shift
  # No GPU: one CPU process, and DeepSpeed on its CPU accelerator for the fuser.
  RANKER_CONFIG=conf/accelerate/cpu.yaml FUSER_CONFIG=conf/accelerate/zero2_cpu.yaml
  export DS_ACCELERATOR=cpu
  set -- --tiny "$@"
else
  RANKER_CONFIG=conf/accelerate/single_gpu.yaml FUSER_CONFIG=conf/accelerate/zero2.yaml
fi
"$ACCELERATE" launch --config_file "$RANKER_CONFIG" scripts/gpu_check.py ranker --out "$OUT" "$@"
"$ACCELERATE" launch --config_file "$FUSER_CONFIG" --num_processes 1 scripts/gpu_check.py fuser --out "$OUT" "$@"
echo "gpu_check: wrote $OUT/gpu_check_ranker.json and $OUT/gpu_check_fuser.json"
