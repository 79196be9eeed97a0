"""
The backbone grid: which backbone for Mask R-CNN, with intervals.

* :mod:`.train_grid`: the grid's runs (learning-rate check, seeds, benchmarks), resumable;
* :mod:`.spread_study`: the seed-spread study of AttoNet-A the protocol is chosen from;
* :mod:`.report`: seed means with 95% intervals, Welch differences, the resolved Pareto
  front, plots and the model-zoo page;
* :mod:`.seed_spread`: the seed-spread table.

Run from the repository root with ``projects/BackboneGrid/train_backbone_grid.py`` and
``projects/BackboneGrid/measure_seed_spread.py``.
"""
