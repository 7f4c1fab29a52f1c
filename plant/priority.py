"""CPU priority for the time-critical threads: the control cycle before bulk work.

On a shared machine (the controller, its camera worker and, in benches, the simulator on two
cores) the control cycle's lag tail is mostly waiting for a CPU that bulk work holds: a
decode, a rendered camera frame. The Linux scheduler fixes that with nice values, as a PLC
runtime fixes it with real-time priorities: the control loop and its store thread run at a
lower nice (more CPU weight, preempting on wake-up), the camera worker at a higher one. Plain
nice values, not SCHED_FIFO: a runaway loop at nice -10 still leaves the machine usable.

On Linux a nice value belongs to a thread (threads made later inherit their creator's), so
``set_nice`` is called by the thread it is for, before that thread starts its helpers.
Lowering a nice value below the one the process started with needs CAP_SYS_NICE (root, or
systemd's ``Nice=`` in the unit); without it the service says so once and runs as started.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

__all__ = ["be_nicer", "set_nice"]

log = logging.getLogger(__name__)
_refused_logged = False


def set_nice(nice: int, what: str) -> bool:
    """Give the calling thread (and the threads and processes it starts from now on) this nice
    value. False, logged once per process, when the system refuses it."""
    global _refused_logged
    if not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()  # Linux keeps nice values per thread
        if os.getpriority(os.PRIO_PROCESS, tid) != nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as exc:
        if not _refused_logged:
            _refused_logged = True
            log.warning("%s: cannot set nice %d (%s): running at nice %d; give the service CAP_SYS_NICE "
                        "(systemd: Nice=%d in its unit) or set the nice setting to null",
                        what, nice, exc.strerror, os.getpriority(os.PRIO_PROCESS, 0), nice)
        return False
    return True


def be_nicer(by: int) -> None:
    """Raise the calling thread's nice value by ``by`` (always allowed): bulk work started from a
    time-critical thread (decoding, rendering) gives way to it."""
    if by <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except OSError as exc:  # not expected: raising one's own nice value needs no privilege
        log.debug("cannot raise the nice value: %s", exc)
