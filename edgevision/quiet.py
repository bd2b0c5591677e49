"""Silence what native libraries print straight to file descriptors 1 and 2 (absl, TFLite, XNNPACK, torchao's
loaders): Python's own redirection cannot reach it. Shown again with ``--debug``. Device-side safe."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

# Read by TensorFlow Lite's and absl's C++ logging when their libraries load.
NATIVE_LOG_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3"}


def quiet_native_logs() -> None:
    """Ask the native loggers to keep quiet (before their libraries load), unless edgevision is in debug mode."""
    if not logging.getLogger("edgevision").isEnabledFor(logging.DEBUG):
        for key, value in NATIVE_LOG_ENV.items():
            os.environ.setdefault(key, value)


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """Point fds 1 and 2 at a scratch file for the duration (not in debug mode). Only for library calls that
    print nothing edgevision needs; its own messages come before and after."""
    if logging.getLogger("edgevision").isEnabledFor(logging.DEBUG):
        yield
        return
    quiet_native_logs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as scratch:
            os.dup2(scratch.fileno(), 1)
            os.dup2(scratch.fileno(), 2)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)
