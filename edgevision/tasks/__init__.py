"""Task plug-ins: detect and segment today; classify, prompt-segment and track next.

A new task is one module with a ``Task`` subclass plus one line in ``TASKS`` (or ``register_task(MyTask())``
at run time, e.g. from a plug-in package or a test).
"""

from __future__ import annotations

import importlib

from edgevision.errors import BadInput
from edgevision.tasks.base import Accumulator, Task

# task name -> "module:Class"
TASKS = {
    "detect": "edgevision.tasks.detect:DetectTask",
    "segment": "edgevision.tasks.segment:SegmentTask",
}
_loaded: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` available under ``task.name`` (replacing a task of that name)."""
    _loaded[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in _loaded:
        if name not in TASKS:
            raise BadInput(f"unknown task '{name}'; known: {', '.join(task_names())}")
        module, _, cls = TASKS[name].partition(":")
        register_task(getattr(importlib.import_module(module), cls)())
    return _loaded[name]


def task_names() -> list[str]:
    return list(dict.fromkeys([*TASKS, *_loaded]))


def make_postprocessor(head: dict, imgsz: int, **options):
    """The postprocessor for a bundle's ``head``, from the task that knows its kind."""
    kind = head.get("kind")
    for name in task_names():
        task = get_task(name)
        if kind in task.postprocessors:
            return task.make_postprocessor(head, imgsz, **options)
    raise ValueError(f"no task has a postprocessor for head kind '{kind}'")


def task_for_result(result) -> Task:
    """The task whose result type ``result`` is (for drawing and JSONL without knowing the task)."""
    for name in task_names():
        task = get_task(name)
        if isinstance(result, task.result_type):
            return task
    raise TypeError(f"no task produces a {type(result).__name__}")


__all__ = ["TASKS", "Accumulator", "Task", "get_task", "make_postprocessor", "register_task", "task_for_result",
           "task_names"]
