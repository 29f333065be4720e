"""SIGTERM handled like Ctrl-C: the job unwinds, so caches flush and the MLflow run is marked KILLED.

SLURM, Kubernetes and ``timeout`` stop a job with SIGTERM, whose default action ends the process
at once: the run would stay RUNNING forever and extracted features not yet written would be lost.
``install()`` makes both signals raise ``Interrupted`` (a ``KeyboardInterrupt``) in the main
thread, so every ``finally`` and ``except KeyboardInterrupt`` on the way out runs.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from types import FrameType

_HANDLED = (signal.SIGTERM, signal.SIGINT)
_installed_pid: int | None = None
_received: int | None = None
_worker_terminated = False  # a forked worker's first SIGTERM was left to the main process


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM or SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def install() -> None:
    """Route SIGTERM and SIGINT to ``Interrupted`` (main thread only; signals ignored by the parent
    process, e.g. SIGINT of a background job, stay ignored)."""
    global _installed_pid
    if threading.current_thread() is not threading.main_thread():
        return
    if _installed_pid is None:
        # registered after multiprocessing's own exit hook, so it runs first (atexit is last in, first out)
        import multiprocessing.util  # noqa: F401

        atexit.register(_stop_workers_at_exit)
    _installed_pid = os.getpid()
    for signum in _HANDLED:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _handle)


def received() -> int | None:
    """The signal that interrupted this process, if any."""
    return _received


def signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum is not None else "SIGINT"


def _handle(signum: int, frame: FrameType | None) -> None:
    global _received
    if os.getpid() != _installed_pid:
        _in_worker(signum)
        return
    if _received is not None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C again: the user insists
        return  # a repeated SIGTERM must not break the clean-up the first one started
    _received = signum
    raise Interrupted(signum)


def _in_worker(signum: int) -> None:
    """A forked worker (a DataLoader's) that inherited the handler got ``signum``.

    Ctrl-C and ``timeout``, SLURM or Kubernetes signal the whole process group, workers included. A
    worker that died of it would make the main process fail with "DataLoader worker (pid N) is
    killed by signal" tracebacks instead of unwinding, so the first signal is left to the main
    process, which shuts its workers down itself; a second SIGTERM (that shutdown's ``terminate()``,
    or an insisting scheduler) ends the worker as without the handler.
    """
    global _worker_terminated
    if signum == signal.SIGTERM and _worker_terminated:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    elif signum == signal.SIGTERM:
        _worker_terminated = True


def _stop_workers_at_exit() -> None:
    """Kill the worker processes still alive when the main process exits.

    A DataLoader iterator that an interrupt or error left unfinished keeps its workers; at exit
    multiprocessing would send each one SIGTERM and wait, but a quiet worker leaves its first SIGTERM
    to the main process (a hang), and torch's SIGCHLD handler reports a worker killed by a signal as
    "DataLoader worker ... killed" tracebacks. Nothing a worker holds needs saving, so: SIGKILL.
    """
    import multiprocessing

    if os.getpid() != _installed_pid:
        return
    workers = [p for p in multiprocessing.active_children() if p.daemon]
    if not workers:
        return
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # torch's handler: workers are stopped on purpose here
    for process in workers:
        process.kill()
    for process in workers:
        process.join(timeout=5)


def quiet_worker(worker_id: int = 0) -> None:
    """``worker_init_fn`` of DataLoaders: the worker leaves the first SIGTERM and every SIGINT to the
    main process (see ``_in_worker``), over the handler torch installs, which dies loudly at once."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)


def _worker_sigterm(signum: int, frame: FrameType | None) -> None:
    _in_worker(signum)
