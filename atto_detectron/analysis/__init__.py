from .complexity import count_mult_adds, count_parameters, mult_adds_by_module, netscore

__all__ = ["count_mult_adds", "count_parameters", "mult_adds_by_module", "netscore"]
