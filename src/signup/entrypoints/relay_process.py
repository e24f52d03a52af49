"""The relay as a process of its own beside `signup serve`'s web process: started with
it, started again if it dies, stopped with it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading

import structlog

log = structlog.get_logger(__name__)
RESTART_AFTER_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 15.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the relay gets SIGTERM when serve dies, even by `kill -9`.

    Elsewhere the relay notices within a second that its parent is gone.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class RelayProcess:
    def __init__(self) -> None:
        self.argv = [sys.executable, "-m", "signup", "relay", "--parent", str(os.getpid())]
        self.starts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._supervise, name="relay-process", daemon=True)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        self._thread.start()

    def _supervise(self) -> None:
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                # Its own session: a terminal's Ctrl-C reaches serve alone, which then
                # stops the relay in order (no restart race).
                process = self._process = subprocess.Popen(  # noqa: S603 - our interpreter
                    self.argv, preexec_fn=_die_with_parent, start_new_session=True
                )
                self.starts += 1
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error("relay.process_exited", code=code, restart_in=RESTART_AFTER_SECONDS)
            self._stopping.wait(RESTART_AFTER_SECONDS)

    def stop(self) -> None:
        """SIGTERM: the relay finishes the batch in hand and lets go of its lease."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
