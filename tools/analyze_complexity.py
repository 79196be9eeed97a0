#!/usr/bin/env python
"""
Parameters, mult-adds and NetScore of the AttoNets beside the paper's Table 2 and the
MobileNet/ShuffleNet baselines, and Atto-MaskRCNN beside ResNet-50-FPN Mask R-CNN.
The code and options: atto_detectron/tools/analyze_complexity.py (or --help).
"""

from atto_detectron.tools.analyze_complexity import cli

if __name__ == "__main__":
    cli()
