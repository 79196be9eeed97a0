from .results import format_summary, summarize_ap, write_results
from .threads import set_cpu_threads
from .trainer import AttoTrainer, StopOnNonFiniteGradients

__all__ = [
    "AttoTrainer",
    "StopOnNonFiniteGradients",
    "format_summary",
    "set_cpu_threads",
    "summarize_ap",
    "write_results",
]
