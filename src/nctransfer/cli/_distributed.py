"""Running a command under ``torchrun``: one process group for the command, output from rank 0 only."""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Callable

from nctransfer.utils import distributed as D


def run_distributed(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``fn(args)``; when launched by ``torchrun`` (``WORLD_SIZE`` > 1), inside a process group created from
    the environment (``nccl`` with CUDA, else ``gloo``), with the standard output of every rank but 0 discarded
    (rank 0 prints the summary; only rank 0 writes reports, see :func:`nctransfer.rank_models`)."""
    started = D.init_from_env()
    try:
        if D.is_main():
            return fn(args)
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            return fn(args)
    finally:
        if started:
            D.shutdown()
