from .arguments import parse_args_any_order
from .ema import ModelEMA, load_ema_weights, load_ema_weights_if_enabled
from .output_dir import OutputDirError, earlier_run_files, exclusive_output_dir
from .results import format_summary, summarize_ap, write_results
from .threads import set_cpu_threads
from .trainer import AttoTrainer, StopOnDivergence, TrainingDiverged

__all__ = [
    "AttoTrainer",
    "ModelEMA",
    "OutputDirError",
    "StopOnDivergence",
    "TrainingDiverged",
    "earlier_run_files",
    "exclusive_output_dir",
    "format_summary",
    "load_ema_weights",
    "load_ema_weights_if_enabled",
    "parse_args_any_order",
    "set_cpu_threads",
    "summarize_ap",
    "write_results",
]
