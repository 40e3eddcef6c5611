"""Data-parallel runs of the ``anyloss`` command: ``--nproc N`` (PyTorch) and ``torchrun``.

Every process runs the whole command (the same folds, the same seeds, the same shuffles); inside each training
step, rank ``r`` of ``W`` takes the ``r``-th of ``W`` near-equal contiguous pieces of the global batch
(:func:`shard`) and the gradients are made those of the global batch:

- AnyLoss losses are built with ``distributed=True``: the four soft counts are all-reduced every step, so every
  rank computes the loss of the global batch, and the all-reduce's backward sums the ranks' gradients, which
  DistributedDataParallel's averaging divides out again;
- mean losses (MSE, BCE, class-weighted BCE, focal) sum their per-sample terms on the shard and scale the sum
  by ``W / n_global``, so DDP's average over ranks is the global batch's mean, for shards of any sizes;
- the MLP's batch normalization (:class:`BatchNorm1d`) computes the global batch's mean and variance by
  all-reduced sums (PyTorch's ``SyncBatchNorm`` runs on GPUs only).

So the model trained by ``W`` processes equals the single-process one up to floating-point rounding (the sums
are added in another order).  Example::

    anyloss compare --backend torch --nproc 2 --model mlp --epochs 20      # spawns 2 gloo workers
    torchrun --nproc-per-node 2 -m anyloss_bench.cli compare --backend torch  # the same, launched by torchrun

Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` in the environment) the process
group is initialized from that environment (``env://``) and ``--nproc`` may be left out.  gloo on CPU, NCCL when
each rank of the node has a GPU of its own (each rank on ``cuda:LOCAL_RANK``; fewer GPUs than ranks: gloo on
the CPU).  Rank 0 alone prints and writes files.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import pickle
import socket
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

from .data import UsageError

__all__ = ["BatchNorm1d", "all_reduce_sum", "device", "launch", "maybe_parallel", "process_group_backend", "shard",
           "world"]

#: A rank that dies makes its peers fail within this time instead of the process group's default 30 minutes.
TIMEOUT = datetime.timedelta(seconds=300)
#: The environment variables torchrun sets; their presence means "this process is one rank of a run".
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialized ``torch.distributed`` process group; ``(0, 1)`` without one."""
    if "torch" not in sys.modules:  # no torch imported: no process group (and no import of torch for JAX runs)
        return 0, 1
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(index: np.ndarray, rank: int, size: int) -> np.ndarray:
    """Rank ``rank``'s piece of the global batch ``index``: the ``rank``-th of ``size`` near-equal contiguous
    parts (``numpy.array_split``; the first ``len(index) % size`` parts one longer, some empty when the batch is
    smaller than ``size``).

    >>> [shard(np.arange(5), r, 2).tolist() for r in range(2)]
    [[0, 1, 2], [3, 4]]
    """
    return np.array_split(np.asarray(index), size)[rank]


def process_group_backend(gpus: int, local_world_size: int) -> str:
    """NCCL when each of this node's ranks has a GPU of its own (``cuda:LOCAL_RANK``), else gloo on the CPU.

    ``--nproc 2`` on a one-GPU machine runs on the CPU rather than failing in rank 1 on an invalid
    device ordinal (seen on a lent H200 machine).

    >>> process_group_backend(0, 2), process_group_backend(1, 2), process_group_backend(2, 2)
    ('gloo', 'gloo', 'nccl')
    """
    return "nccl" if gpus > 0 and gpus >= local_world_size else "gloo"


def device() -> Any:
    """The torch device of this rank: ``cuda:LOCAL_RANK`` under an NCCL process group, else the CPU."""
    import torch

    if world()[1] > 1:
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _all_reduce_function() -> Any:
    import torch

    class AllReduceSum(torch.autograd.Function):
        """``all_reduce(x, SUM)`` whose backward is ``all_reduce(grad, SUM)`` (the adjoint of "every rank gets
        the sum"); synchronous, so nothing is in flight when a rank tears its group down."""

        @staticmethod
        def forward(ctx: Any, tensor: Any) -> Any:
            import torch.distributed as dist

            summed = tensor.clone()  # all_reduce works in place: never on the caller's tensor
            dist.all_reduce(summed, op=dist.ReduceOp.SUM)
            return summed

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            import torch.distributed as dist

            summed = grad.contiguous().clone()
            dist.all_reduce(summed, op=dist.ReduceOp.SUM)
            return summed

    return AllReduceSum


_ALL_REDUCE: Any = None


def all_reduce_sum(tensor: Any) -> Any:
    """The sum of ``tensor`` over the ranks, differentiable (its backward sums the ranks' gradients)."""
    global _ALL_REDUCE
    if _ALL_REDUCE is None:
        _ALL_REDUCE = _all_reduce_function()
    return _ALL_REDUCE.apply(tensor)


def _batch_norm_class() -> Any:
    import torch

    class BatchNorm1d(torch.nn.BatchNorm1d):
        """``torch.nn.BatchNorm1d`` whose training statistics are those of the global batch under a process group.

        Mean ``s1 / n`` and biased variance ``s2 / n`` with ``n``, ``s1 = sum x`` and ``s2 = sum (x - mean)^2``
        all-reduced over the ranks (two passes, as a single process computes them); the running variance takes
        the unbiased ``s2 / (n - 1)`` as ``torch.nn.BatchNorm1d`` does.  Without a process group (or with one
        rank) it is ``torch.nn.BatchNorm1d`` itself.
        """

        def forward(self, input: Any) -> Any:
            if not self.training or world()[1] == 1:
                return super().forward(input)
            n = all_reduce_sum(torch.tensor([float(input.shape[0])], dtype=input.dtype, device=input.device))
            mean = all_reduce_sum(input.sum(0)) / n
            centred = input - mean
            s2 = all_reduce_sum((centred * centred).sum(0))
            var = s2 / n
            with torch.no_grad():
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * (s2.detach() / (n.detach() - 1).clamp_min(1)))
                self.num_batches_tracked.add_(1)
            out = centred / torch.sqrt(var + self.eps)
            return out * self.weight + self.bias if self.affine else out

    return BatchNorm1d


_BN: Any = None


def BatchNorm1d(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 (a class factory, named as the class)
    """A :class:`torch.nn.BatchNorm1d` that normalizes by the global batch's statistics under a process group.

    Example: ``BatchNorm1d(2, momentum=0.01, eps=1e-3)`` (Keras's defaults), as the paper's MLP has it.
    """
    global _BN
    if _BN is None:
        _BN = _batch_norm_class()
    return _BN(*args, **kwargs)


# --- launching ------------------------------------------------------------------------------------------


def _under_torchrun() -> bool:
    return all(k in os.environ for k in TORCHRUN_ENV)


def check_nproc(nproc: int | None, backend: str) -> int:
    """The number of processes of this run (``--nproc``, or torchrun's ``WORLD_SIZE``), checked: a usage error
    for ``--nproc`` below 1, for a backend other than torch with more than one, and for ``--nproc`` other than
    torchrun's world size."""
    if nproc is not None and nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}")
    size = nproc or 1
    if _under_torchrun():
        launched = int(os.environ["WORLD_SIZE"])
        if nproc is not None and nproc != launched:
            raise UsageError(f"--nproc {nproc} but torchrun started WORLD_SIZE={launched} processes "
                             "(leave --nproc out under torchrun)")
        size = launched
    if size > 1 and backend != "torch":
        raise UsageError(f"--nproc {size} (data-parallel) runs on the PyTorch backend: add --backend torch")
    return size


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def maybe_parallel(args: Any, nproc: int) -> tuple[bool, Any]:
    """``(True, rank 0's result)`` when this call ran the command in parallel (spawned ``nproc`` workers, or,
    under torchrun, joined its process group and ran it here); ``(False, None)`` when the caller should run it
    itself (one process, or already inside a process group)."""
    if world()[1] > 1 or nproc == 1 and not _under_torchrun():
        return False, None
    if _under_torchrun():
        return True, run_in_group(args)
    return True, launch(args, nproc)


def launch(args: Any, nproc: int) -> Any:
    """Run ``args.func(args)`` in ``nproc`` new processes forming one gloo (or NCCL) group; rank 0's result.

    Each worker is ``python -m anyloss_bench.parallel FILE`` with torchrun's variables (``RANK``, ``LOCAL_RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT``) and ``OMP_NUM_THREADS=1`` (one thread per
    rank).  Rank 0 writes to this process's stdout and stderr; the others' stderr is shown only if they fail.
    When one worker fails the others are stopped and the failure is raised.
    """
    with tempfile.TemporaryDirectory(prefix="anyloss-nproc-") as tmp:
        job = os.path.join(tmp, "args.pkl")
        with open(job, "wb") as handle:
            pickle.dump(args, handle)
        port = _free_port()
        procs, logs = [], []
        for rank in range(nproc):
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
                   "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                   "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
            log = open(os.path.join(tmp, f"rank{rank}.err"), "w+b") if rank else None  # noqa: SIM115
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, "-m", "anyloss_bench.parallel", job], env=env,
                                          stdout=None if rank == 0 else subprocess.DEVNULL,
                                          stderr=None if rank == 0 else log))
        try:
            failed = _wait_all(procs)
        finally:
            for p in procs:  # only the workers started above
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if failed is not None:
            rank, code = failed
            detail = ""
            if logs[rank] is not None:
                logs[rank].seek(0)
                detail = logs[rank].read().decode(errors="replace").strip().splitlines()[-1:]
                detail = f": {detail[0]}" if detail else ""
            for log in logs:
                if log is not None:
                    log.close()
            if code == 2:  # the worker printed "anyloss: error: ..." (rank 0 to this stderr)
                raise UsageError(f"--nproc {nproc}: worker rank {rank} stopped on a usage error{detail}")
            raise RuntimeError(f"--nproc {nproc}: worker rank {rank} exited with code {code}{detail}")
        for log in logs:
            if log is not None:
                log.close()
        result_path = job + ".result"
        if not os.path.exists(result_path):
            return None
        with open(result_path, "rb") as handle:
            return pickle.load(handle)


def _wait_all(procs: list[subprocess.Popen]) -> tuple[int, int] | None:
    """Wait for every worker; ``(rank, exit code)`` of the first to fail (the rest are then stopped), or None."""
    import time

    pending = set(range(len(procs)))
    while pending:
        for rank in sorted(pending):
            code = procs[rank].poll()
            if code is None:
                continue
            pending.discard(rank)
            if code != 0:
                return rank, code
        time.sleep(0.05)
    return None


def run_in_group(args: Any) -> Any:
    """Join the process group described by the environment (``env://``), run ``args.func(args)``, tear down.

    One torch thread per rank (``OMP_NUM_THREADS``, default 1); ranks other than 0 print nothing and write no
    file.  Teardown as the DDP tests do it: the wrappers are gone, garbage collected, a barrier (no rank closes
    its connections while a peer still talks to it), then ``destroy_process_group``.
    """
    import torch
    import torch.distributed as dist

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rank = int(os.environ["RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    backend = process_group_backend(torch.cuda.device_count() if torch.cuda.is_available() else 0, local_world)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, init_method="env://", timeout=TIMEOUT)
    try:
        if rank != 0:
            for option in ("json", "markdown", "plot"):
                if getattr(args, option, None):
                    setattr(args, option, None)
        with open(os.devnull, "w") as null, (contextlib.redirect_stdout(null) if rank else contextlib.nullcontext()):
            result = args.func(args)
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return result


def _worker(job: str) -> None:
    with open(job, "rb") as handle:
        args = pickle.load(handle)
    result = run_in_group(args)
    if int(os.environ["RANK"]) == 0:
        with open(job + ".result", "wb") as handle:
            pickle.dump(result, handle)


if __name__ == "__main__":
    try:
        _worker(sys.argv[1])
    except UsageError as exc:
        print(f"anyloss: error: {exc}", file=sys.stderr)
        sys.exit(2)
