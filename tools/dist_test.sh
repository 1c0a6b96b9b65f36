#!/usr/bin/env bash
# Distributed testing with torchrun, on GPUs (NCCL) or CPUs (gloo):
#   tools/dist_test.sh CONFIG [CHECKPOINT] NPROC [test.py args]
# NNODES, NODE_RANK, MASTER_ADDR and PORT as in dist_train.sh.
set -euo pipefail
CONFIG=$1
if [[ $# -ge 3 && -f "$2" ]]; then CHECKPOINT=("$2"); shift; else CHECKPOINT=(); fi
NPROC=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
TOOLS="$(cd "$(dirname "$0")" && pwd)"
export PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$TOOLS/test.py" "$CONFIG" "${CHECKPOINT[@]}" --launcher pytorch "$@"
