"""`die_with_parent`: tie a worker process's life to its parent's (Linux parent-death signal).

A decode worker blocks on its job queue forever; nothing in multiprocessing ends it when the
controller dies without shutting the pool down (``kill -9``, a crash, the OOM killer). On the
floor that left ~100 MB workers running for minutes with parent 1. The kernel can do what
Python cannot once the parent is gone: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` asks it to SIGKILL
this process as soon as its parent goes, however the parent goes and whatever this process is
doing (a decoder library stuck in C code included).

The setting can only be made from inside the child, so it runs first thing in each worker (as
the pool's initializer). It covers one generation: the parent must be the process whose life
matters, which is why `ParcelDecoder` starts its workers directly (``spawn``) rather than
through a fork server.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL the calling process when its parent dies; call it in the child.

    `parent_pid` is the pid the caller expects as its parent (the parent passes its own
    ``os.getpid()``). If the parent died before the signal was asked for, the kernel will never
    send it (the process has already been re-parented to init or a subreaper), so the process
    kills itself now, as the signal would have.

    The kernel's "parent" is the *thread* that started the process: a worker started from a
    thread that ends before the rest of its process is killed then too. `ParcelDecoder` starts
    workers from the thread running its event loop, which lasts as long as the service; a worker
    killed that way would only make the pool be replaced.

    On platforms other than Linux this does nothing (there is no such signal); a worker there
    may outlive a parent that is killed.
    """
    if not sys.platform.startswith("linux"):
        log.debug("no parent-death signal on %s: this process may outlive its parent", sys.platform)
        return
    libc = ctypes.CDLL(None, use_errno=True)  # the C library already loaded into this process
    if libc.prctl(ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL)) != 0:
        # Not expected (SIGKILL is a valid signal); the worker still decodes, it just may
        # outlive a killed parent, so say so rather than refuse to work.
        log.error("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
        return
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
