"""Worker processes that die with their parent.

`process_pool` is a ProcessPoolExecutor whose workers ask the kernel (Linux prctl
PR_SET_PDEATHSIG) to be killed when the process that started them dies, however it dies:
SIGTERM, SIGKILL or a crash. Without it, the workers of a killed `anygpt data build` or
`anygpt tokenize` live on, blocked or still writing into the output folder.
"""

from __future__ import annotations

import ctypes
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """In a child process: be killed when `parent_pid` (the process that started us) dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's normal shutdown still ends the pool
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _start(parent_pid: int, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def process_pool(workers: int, initializer: Callable[..., Any] | None = None, initargs: tuple = ()) -> ProcessPoolExecutor:
    """A ProcessPoolExecutor of `workers` processes that die with this one. Use it from the main
    thread (the kernel ties a child to the thread that started it)."""
    return ProcessPoolExecutor(workers, initializer=_start, initargs=(os.getpid(), initializer, initargs))
