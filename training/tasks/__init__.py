"""The fine-tuning tasks of `scratchlm-finetune --task`: one module per task, each a `FinetuneTask`.

Adding a task is adding a module with a `FinetuneTask` subclass (and the dataclass of its options, its
`arguments`) and one line in `TASKS`.
"""

from __future__ import annotations

from .base import FinetuneTask
from .classification import ClassificationTask
from .dpo import DPOTask
from .qa import QATask
from .seq2seq import Seq2SeqTask
from .sft import SFTTask

TASKS: dict[str, type[FinetuneTask]] = {task.name: task for task in (ClassificationTask, SFTTask, QATask, DPOTask,
                                                                    Seq2SeqTask)}


def get_task(name: str, options=None) -> FinetuneTask:
    """The task `name` with its options (an instance of its `arguments`; default: their defaults)."""
    if name not in TASKS:
        raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {name!r}")
    return TASKS[name](options)


__all__ = ["TASKS", "ClassificationTask", "DPOTask", "FinetuneTask", "QATask", "SFTTask", "Seq2SeqTask", "get_task"]
