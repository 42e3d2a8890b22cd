#!/bin/bash

# Parameters
#SBATCH --array=0-2%2
#SBATCH --cpus-per-task=4
#SBATCH --error=<SWEEP>/submitit/%A_%a/%A_%a_0_log.err
#SBATCH --gpus-per-node=1
#SBATCH --job-name=spec
#SBATCH --mem=16GB
#SBATCH --nodes=1
#SBATCH --open-mode=append
#SBATCH --output=<SWEEP>/submitit/%A_%a/%A_%a_0_log.out
#SBATCH --partition=gpu
#SBATCH --signal=USR2@120
#SBATCH --time=90
#SBATCH --wckey=submitit

# setup
module load cuda

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output <SWEEP>/submitit/%A_%a/%A_%a_%t_log.out --error <SWEEP>/submitit/%A_%a/%A_%a_%t_log.err <PYTHON> -u -m submitit.core._submit <SWEEP>/submitit/%j
