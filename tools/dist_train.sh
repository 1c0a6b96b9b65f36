#!/usr/bin/env bash
# Distributed training with torchrun, on GPUs (NCCL) or CPUs (gloo):
#   tools/dist_train.sh CONFIG NPROC [train.py args]
# NPROC processes on this node (one per GPU; on CPU, e.g. sockets or cores /
# OMP_NUM_THREADS). Several nodes: run the same command on each node with
# NNODES, NODE_RANK (0..NNODES-1), MASTER_ADDR (node 0's address) and PORT
# set (docs/distributed.md). PYTHON selects the interpreter.
set -euo pipefail
CONFIG=$1
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
    "$TOOLS/train.py" "$CONFIG" --launcher pytorch "$@"
