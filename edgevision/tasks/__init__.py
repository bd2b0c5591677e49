"""Task plug-ins: detect, segment, classify, prompt-segment and track.

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
    "classify": "edgevision.tasks.classify:ClassifyTask",
    "prompt-segment": "edgevision.tasks.prompt_segment:PromptSegmentTask",
    "track": "edgevision.tasks.track:TrackTask",
}
_loaded: dict[str, Task] = {}
_by_result_type: dict[type, Task] = {}


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
    """The task whose result type ``result`` is (for drawing and JSONL without knowing the task). Called per
    frame, so the answer is kept per result type."""
    kind = type(result)
    task = _by_result_type.get(kind)
    if task is None or _loaded.get(task.name) is not task:  # unknown, or its task was re-registered
        task = next((t for t in map(get_task, task_names()) if isinstance(result, t.result_type)), None)
        if task is None:
            raise TypeError(f"no task produces a {kind.__name__}")
        _by_result_type[kind] = task
    return task


__all__ = ["TASKS", "Accumulator", "Task", "get_task", "make_postprocessor", "register_task", "task_for_result",
           "task_names"]
