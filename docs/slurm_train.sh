#!/bin/bash
# Example SLURM batch script: eqv2 train on several GPU nodes with torchrun (c10d rendezvous).
#
#   sbatch docs/slurm_train.sh                # adjust the #SBATCH lines and paths first
#
# One torchrun per node (srun --ntasks-per-node=1), each starting one eqv2 process per GPU;
# the first node of the allocation hosts the rendezvous. A requeued or resubmitted job
# continues the run: --resume is added when the run directory already holds a checkpoint.
# RUN_DIR and the data must be on a file system every node sees.
#SBATCH --job-name=eqv2-s2ef-2m
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64          # 8 processes x (1 thread + data.num_workers workers) and more
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --output=%x-%j.out

set -euo pipefail

CONFIG=${CONFIG:-configs/s2ef_2m_base.yaml}
TRAIN=${TRAIN:-/shared/oc20/s2ef/2M/train}    # directory of OC20 LMDB shards
VAL=${VAL:-/shared/oc20/s2ef/val_id}
RUN_DIR=${RUN_DIR:-/shared/runs/eqv2-s2ef-2m-base}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}

HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=${PORT:-29500}
RESUME=()
if [[ -f "$RUN_DIR/checkpoint.pt" ]]; then
    RESUME=(--resume)
fi
# NCCL/gloo over the cluster network (set to your interface if the default is wrong):
# export NCCL_SOCKET_IFNAME=ib0 GLOO_SOCKET_IFNAME=ib0
export OMP_NUM_THREADS=1

srun --kill-on-bad-exit=1 torchrun \
    --nnodes "$SLURM_JOB_NUM_NODES" --nproc_per_node "$GPUS_PER_NODE" \
    --rdzv_backend c10d --rdzv_endpoint "$HEAD:$PORT" --rdzv_id "$SLURM_JOB_ID" \
    -m eqv2 train "$CONFIG" --train "$TRAIN" --val "$VAL" --out "$RUN_DIR" \
    --no-progress "${RESUME[@]}"
