"""Run brachymc batches on a SLURM cluster with dask-jobqueue (example; adapt queue, account, resources).

    pip install dask-jobqueue
    python configs/cluster/slurm_example.py run.toml out/

Each SLURM job is one Dask worker (one process, one GPU when --gres asks for it). The problem
(phantom, seeds, tables) is sent to every worker once; batches are tasks; the client adds the
tallies in batch order, so the result equals a single-process run with the same seed.
Checkpoints are written by the client (out/checkpoint.h5): rerun with resume=True after a
preemption. Workers must be able to import brachymc (same environment on the nodes) and the
physics-table cache folder ($BRACHYMC_CACHE_DIR) should be on a shared filesystem.
"""

import sys
from pathlib import Path

from dask.distributed import Client
from dask_jobqueue import SLURMCluster

from brachymc.pipeline.config import load_run_config
from brachymc.pipeline.distributed import close_client
from brachymc.pipeline.patient import run_patient

if __name__ == "__main__":
    run_file, out = Path(sys.argv[1]), Path(sys.argv[2])
    cluster = SLURMCluster(
        queue="gpu", account="my_account", cores=4, processes=1, memory="32GB", walltime="02:00:00",
        job_extra_directives=["--gres=gpu:1"],          # drop for CPU-only workers
        worker_extra_args=["--nthreads", "1"],
        job_script_prologue=["source ~/brachymc-env/bin/activate"],
    )
    cluster.scale(jobs=8)                                   # 8 workers (8 GPUs)
    client = Client(cluster)
    try:
        cfg = load_run_config(run_file).with_simulation(backend="cupy")
        run_patient(cfg, out, resume=(out / "checkpoint.h5").exists(), client=client)
    finally:
        close_client(client)
