"""Backends that run bundles, behind one interface: ``open_runner(bundle).run(graph, {name: array})``."""

from edgevision.runtime.base import RUNTIMES, Runner, open_runner

__all__ = ["RUNTIMES", "Runner", "open_runner"]
