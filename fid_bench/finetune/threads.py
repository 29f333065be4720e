"""``trainer.threads``: how many intra-op threads torch uses while a fine-tuning job trains and scores.

On the CPU the DataLoader's worker processes decode and augment images on the same cores as the
training process. Torch's default (one intra-op thread per core) then competes with them: its
threads spin waiting on each other whenever a worker or another job holds a core, and an epoch
can take several times longer than with one thread. ``null`` (auto) therefore gives the training
process the CPUs the job may use (``os.sched_getaffinity``) minus its loader workers, at least 1 and
never more than torch would use anyway; on a GPU the network does not run on the CPU threads, so
auto only applies that cap. An integer is used as given.

The setting is applied for one job and restored afterwards (``torch_threads``), so the other jobs
of a sweep run in the same process, and tests, start from torch's own setting. Loader workers run
one torch thread each (``init_loader_worker``).

Torch is imported inside the functions: the detector module that reads the setting is imported by
Hydra before any job runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fid_bench import signals
from fid_bench.errors import FidBenchError

log = logging.getLogger(__name__)


def check_threads(value: Any) -> int | None:
    """``trainer.threads`` as given: ``None`` (auto) or an integer >= 1; anything else is a one-line error."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FidBenchError(f"trainer.threads must be null (auto) or an integer >= 1, got {value!r}")
    return int(value)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: what a container or ``taskset`` grants)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity call outside Linux
        return max(1, os.cpu_count() or 1)


def auto_threads(
    cpus: int, workers: int, *, processes: int = 1, on_cpu: bool = True, current: int | None = None
) -> int:
    """The ``null`` choice of ``trainer.threads``.

    ``cpus`` available to the job are shared by its ``processes`` (DDP ranks on this node); on the
    CPU each process leaves one core to each of its ``workers``. ``current`` (torch's own setting,
    e.g. from ``OMP_NUM_THREADS``) caps the result, on a GPU too: auto never raises it.
    """
    share = max(1, int(cpus) // max(1, int(processes)))
    chosen = share - max(0, int(workers)) if on_cpu else share
    if current is not None:
        chosen = min(chosen, int(current))
    return max(1, chosen)


def resolve_threads(setting: int | None, *, workers: int, processes: int = 1, on_cpu: bool = True) -> int:
    """The thread count a job runs with: ``setting`` when given, else ``auto_threads`` on this machine."""
    if setting is not None:
        return setting
    import torch

    return auto_threads(
        available_cpus(), workers, processes=processes, on_cpu=on_cpu, current=torch.get_num_threads()
    )


@contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Run the block with ``threads`` torch intra-op threads; torch's previous setting is restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    _lower_interop_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def _lower_interop_threads(threads: int) -> None:
    """Inter-op threads down to ``threads`` when torch still allows it.

    Torch accepts this once per process and only before any parallel work, and it cannot be undone:
    it is only ever lowered, and a refusal (a later job, or work already started) is not an error.
    """
    import torch

    if torch.get_num_interop_threads() <= threads:
        return
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        log.debug("torch inter-op threads left at %d (already in use)", torch.get_num_interop_threads())


def init_loader_worker(worker_id: int = 0) -> None:
    """``worker_init_fn`` of the fine-tuning loaders: one torch thread per worker process (the cores
    belong to the training process), and Ctrl-C/SIGTERM handled as ``signals.quiet_worker`` does."""
    import torch

    torch.set_num_threads(1)
    signals.quiet_worker(worker_id)
