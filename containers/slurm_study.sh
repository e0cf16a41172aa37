#!/usr/bin/env bash
# One study on a SLURM cluster, every run inside the Apptainer image: one array task per fold.
#   apptainer build lanmsff.sif containers/lanmsff.def
#   sbatch --array=0-9%4 containers/slurm_study.sh kdef_subject      (10 folds, at most 4 at once)
#   lanmsff-compare logs/kdef_subject/multiruns/<array job id> --out reports/kdef_subject
# A pre-empted or requeued task restarts in its own run folder and continues from its last checkpoint
# (resume=auto). Edit the #SBATCH lines for your cluster (or pass them to sbatch).
#SBATCH --job-name=lanmsff
#SBATCH --partition=gpu
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=logs/slurm/%A_%a.out
set -euo pipefail
study=${1:?usage: sbatch --array=0-9 containers/slurm_study.sh STUDY [override ...]}
shift
image=${LANMSFF_IMAGE:-lanmsff.sif}
run_dir="logs/$study/multiruns/${SLURM_ARRAY_JOB_ID:?run me with sbatch --array}/${SLURM_ARRAY_TASK_ID}"
exec apptainer exec --nv "$image" lanmsff-train "experiment=$study" "data.fold=$SLURM_ARRAY_TASK_ID" \
    trainer=gpu "hydra.run.dir=$run_dir" "$@"
