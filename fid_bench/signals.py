"""SIGTERM handled like Ctrl-C: the job unwinds, so caches flush and the MLflow run is marked KILLED.

SLURM, Kubernetes and ``timeout`` stop a job with SIGTERM, whose default action ends the process
at once: the run would stay RUNNING forever and extracted features not yet written would be lost.
``install()`` makes both signals raise ``Interrupted`` (a ``KeyboardInterrupt``) in the main
thread, so every ``finally`` and ``except KeyboardInterrupt`` on the way out runs.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

_HANDLED = (signal.SIGTERM, signal.SIGINT)
_installed_pid: int | None = None
_received: int | None = None


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
        # a forked worker (e.g. a DataLoader's) inherited this handler: behave as without it
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _received is not None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C again: the user insists
        return  # a repeated SIGTERM must not break the clean-up the first one started
    _received = signum
    raise Interrupted(signum)
