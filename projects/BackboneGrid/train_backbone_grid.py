#!/usr/bin/env python
"""
The backbone grid: Mask R-CNN with each backbone under one comparison protocol, means
with 95% intervals (README.md beside this file; options in backbone_grid/train_grid.py)::

    python projects/BackboneGrid/train_backbone_grid.py --update-docs
"""

from backbone_grid.train_grid import main

if __name__ == "__main__":
    main()
