"""The parquet contract between gather and reports: column names, meanings and dtypes.

runs.parquet has one row a run; history.parquet one row a (run, epoch). Config keys appear
flattened with dots (`optimizer.name`, `optimizer.rho_max`, ...), one column each, typed from the
RunConfig dataclasses. Accuracies are percentages (0-100), losses are means over examples.
An empty sweep has exactly the same columns and dtypes as a large one.

`status` is one of RUN_STATUSES (see gsam_repro.sweep.store for how it is read). Config columns
whose field takes lists or mappings (`optimizer.betas`, `*.kwargs`) hold JSON text;
`optimizer.adaptive` holds "false", "paper" or "asam".
"""

from __future__ import annotations

RUN_STATUSES = ("done", "diverged", "failed", "running", "pending")

# Columns every runs.parquet has besides the flattened config, with pandas dtypes.
RUN_COLUMNS: dict[str, str] = {
    "run_id": "string",
    "sweep": "string",
    "run_dir": "string",  # relative to the sweep directory
    "status": "string",
    "error": "string",  # first line of the error for failed runs
    # final metrics (last evaluated epoch)
    "epochs_completed": "Int64",
    "best_epoch": "Int64",
    "test_acc": "Float64",
    "test_top5": "Float64",
    "test_loss": "Float64",
    "val_acc": "Float64",
    "val_loss": "Float64",
    "train_acc": "Float64",
    "train_loss": "Float64",
    "best_test_acc": "Float64",
    "best_val_acc": "Float64",
    "f": "Float64",  # last epoch mean of the loss at w (SAM family)
    "f_p": "Float64",  # last epoch mean of the loss at w + eps
    "surrogate_gap": "Float64",  # last epoch mean of h = f_p - f
    "rho": "Float64",  # last epoch mean of rho_t
    "grad_norm": "Float64",  # last epoch mean of ||g|| (SAM family)
    "grad_p_norm": "Float64",  # last epoch mean of ||g_p||
    "cos": "Float64",  # last epoch mean of cos(g, g_p)
    "hessian_max_eig": "Float64",
    # end of training, the same measurement for every optimizer (see PROBE_PREFIX below)
    "probe_f": "Float64",  # loss at the final weights on the probe batches (eval mode)
    "memorized_pct": "Float64",  # label noise: % of flipped images predicted as their noisy label
    "flipped_clean_pct": "Float64",  # label noise: % of flipped images predicted as the clean one
    "test_acc_at_best_val": "Float64",  # test accuracy at the epoch of best validation accuracy
    # the optimizer's facts, read from the optimizer object (gsam_repro.optim.optimizer_facts)
    "optimizer_family": "string",  # plain | sharpness_aware
    "passes_per_step": "Float64",  # forward+backward passes a step (an average if it varies)
    "radius": "Float64",  # the radius of every sharpness-aware run (GSAM: rho_max); null if plain
    "rho_start": "Float64",  # rho_t at lr_max
    "rho_end": "Float64",  # rho_t at lr_min
    # cost
    "wall_s": "Float64",
    "fwd_bwd_passes": "Int64",
    "steps": "Int64",
    "images_per_s": "Float64",
    "peak_mem_mb": "Float64",
    "world_size": "Int64",  # processes of a data-parallel run (1: one process)
    "per_device_batch": "Int64",  # m of m-sharpness: the batch each perturbation sees
    # environment
    "torch_version": "string",
    "device": "string",
    "git_sha": "string",
    "hostname": "string",
    "git_dirty": "boolean",  # tracked files differed from git_sha when the run started
    "cpu_model": "string",
    "cpu_capability": "string",  # the instruction set torch's CPU kernels use (e.g. AVX512)
    "gpu_name": "string",
    "optimizer_file_sha256": "string",  # a `file.py:Class` optimizer's file, as it ran
}

# Sharpness probes: one Float64 column per radius of eval.probe_rhos, named by
# gsam_repro.train.config.probe_key (probe_h_rho0.05: the mean over the probe batches of
# f(w + 0.05 g/||g||) - f(w) at the final weights). Which radii exist depends on the sweep.
PROBE_DTYPE = "Float64"

# Columns of history.parquet (one row a run and epoch).
HISTORY_COLUMNS: dict[str, str] = {
    "run_id": "string",
    "sweep": "string",
    "epoch": "Int64",
    "lr": "Float64",
    "rho": "Float64",
    "train_loss": "Float64",
    "train_acc": "Float64",
    "f": "Float64",
    "f_p": "Float64",
    "surrogate_gap": "Float64",
    "grad_norm": "Float64",
    "grad_p_norm": "Float64",
    "cos": "Float64",
    "test_loss": "Float64",
    "test_acc": "Float64",
    "test_top5": "Float64",
    "val_loss": "Float64",
    "val_acc": "Float64",
    "epoch_s": "Float64",
    "train_s": "Float64",  # time in the training pass (data_s of it waiting for batches)
    "data_s": "Float64",
    "eval_s": "Float64",
    "images_per_s": "Float64",
    "fwd_bwd_passes": "Int64",
    "wall_s": "Float64",
}
