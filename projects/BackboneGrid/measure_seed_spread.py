#!/usr/bin/env python
"""
The seed-spread study of AttoNet-A that the backbone grid's protocol is chosen from
(README.md beside this file; options in backbone_grid/spread_study.py)::

    python projects/BackboneGrid/measure_seed_spread.py --recipes demo syncbn long --update-docs
"""

from backbone_grid.spread_study import main

if __name__ == "__main__":
    main()
