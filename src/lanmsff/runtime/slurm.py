"""Running under SLURM: the job a process belongs to, and who owns requeueing (submitit, not Lightning).

hydra-submitit-launcher (``hydra/launcher=slurm``) starts each sweep job through submitit, which
exports ``SUBMITIT_EXECUTOR=slurm``. submitit requeues a job after its warning signal (USR2, or USR1
routed to it by :func:`route_usr1_to_submitit`) in the same run folder, where ``resume=auto``
continues from ``checkpoints/last.ckpt``; Lightning's own SLURM auto-requeue (a mid-epoch
``hpc_ckpt_N.ckpt``) is then turned off, since resuming from it is not exact.
"""

from __future__ import annotations

import os
import signal
from typing import Any


def slurm_job() -> dict[str, Any] | None:
    """The SLURM job this process runs in (``None`` outside SLURM): its id, tasks, and how often SLURM
    restarted it (``scontrol requeue``, pre-emption, submitit's requeue after its warning signal)."""
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return None
    array_job, array_task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    return {
        "job_id": f"{array_job}_{array_task}" if array_job and array_task else env["SLURM_JOB_ID"],
        "restart_count": int(env.get("SLURM_RESTART_COUNT") or 0),
        "ntasks": int(env.get("SLURM_NTASKS") or 1),
        "nodelist": env.get("SLURM_JOB_NODELIST"),
        "partition": env.get("SLURM_JOB_PARTITION"),
    }


def under_submitit() -> bool:
    """True in a job that submitit started on SLURM (``hydra/launcher=slurm``): submitit owns requeueing."""
    return os.environ.get("SUBMITIT_EXECUTOR") == "slurm"


def route_usr1_to_submitit() -> None:
    """Under submitit, make SIGUSR1 (``sbatch --signal=USR1@...``, ``scancel --signal=USR1``) do what
    submitit's own warning signal does: re-submit this job, ``scontrol requeue`` it and exit (counted
    against ``max_num_timeout`` on time-outs). Call it from the main thread."""
    if not under_submitit():
        return
    from submitit.core.job_environment import JobEnvironment

    own = JobEnvironment._usr_sig()
    handler = signal.getsignal(own)
    if own != signal.SIGUSR1 and callable(handler):
        signal.signal(signal.SIGUSR1, handler)
