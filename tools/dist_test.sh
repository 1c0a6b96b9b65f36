#!/usr/bin/env bash
# Distributed testing with torchrun: tools/dist_test.sh CONFIG [CHECKPOINT] GPUS [test.py args]
set -euo pipefail
CONFIG=$1
if [[ $# -ge 3 && -f "$2" ]]; then CHECKPOINT=("$2"); shift; else CHECKPOINT=(); fi
GPUS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
cd "$(dirname "$0")/.."
exec python -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    tools/test.py "$CONFIG" "${CHECKPOINT[@]}" --launcher pytorch "$@"
