"""The command line's thread policy: how many threads torch runs on, and how they wait.

Two levers, measured by ``benchmarks/bench_speed.py`` (docs/performance.rst):

* **threads**: torch's intra-op threads. On a machine shared with other jobs, more
  threads than the cores actually free make every thread wait for a core; by
  default the command takes the cores free (those the process may run on, less
  the 1-minute load average, at least 1), or ``--threads N``.
* **OpenMP's wait policy**: by default GNU OpenMP (torch's) keeps a thread that
  has finished its share of an operation spinning, ready for the next one; on a
  busy machine those spinning threads take the cores the working ones need, and
  two threads ran about ten times slower than one. ``OMP_WAIT_POLICY=PASSIVE``
  makes them sleep instead. OpenMP reads the variable once, when torch loads it,
  so it must be in the environment before ``import torch``:
  :func:`command_line_wait_policy` sets it (unless the user has) from the
  package's ``__init__``, the first code of the package a command runs, and only
  for the command line, so a program that imports the library keeps its own
  environment.

This module imports nothing heavy (not torch) at import time.
"""

from __future__ import annotations

import os
import sys

__all__ = ["WAIT_POLICY", "command_line_wait_policy", "free_cores", "set_threads"]

#: OpenMP's wait policy the command line runs with (unless OMP_WAIT_POLICY is set).
WAIT_POLICY = "PASSIVE"


def _is_command_line():
    """Whether this process is the ``mmlgnet`` command (its console script, or
    ``python -m sklearn_mmlgnet``, during which Python's ``sys.argv[0]`` is
    ``"-m"`` while the package is imported)."""
    argv = getattr(sys, "argv", None) or [""]
    name = os.path.basename(str(argv[0]))
    return name in ("mmlgnet", "mmlgnet.exe", "mmlgnet-script.py") or argv[0] == "-m"


def command_line_wait_policy(environ=None, force=False):
    """Set ``OMP_WAIT_POLICY`` to :data:`WAIT_POLICY` for the command line.

    Only when this process is the command line (or ``force``), torch is not yet
    imported (OpenMP would not read it any more) and the user has not set it.

    Returns
    -------
    str or None
        The policy now in the environment for OpenMP to read, or None when it is
        left alone.

    Examples
    --------
    >>> env = {}
    >>> command_line_wait_policy(env, force=True) if "torch" not in sys.modules else "PASSIVE"
    'PASSIVE'
    """
    environ = os.environ if environ is None else environ
    if not (force or _is_command_line()) or "torch" in sys.modules:
        return None
    return environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)


def free_cores():
    """The cores free for this process: those it may run on, less the 1-minute load
    average (rounded), at least 1.

    Examples
    --------
    >>> free_cores() >= 1
    True
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(1, min(n, int(round(n - load))))


def set_threads(threads=None):
    """Run torch's operations on ``threads`` threads (default: :func:`free_cores`).

    Returns
    -------
    int
        The number of threads set.
    """
    import torch

    n = free_cores() if threads is None else int(threads)
    if n < 1:
        raise ValueError(f"--threads must be a positive int; got {threads!r}.")
    torch.set_num_threads(n)
    return n
