#!/usr/bin/env python
"""
Trains and evaluates Atto-MaskRCNN (or any config here) with Detectron2's
trainer. The code, usage and options: atto_detectron/tools/train_net.py (or --help);
an installed package runs the same as `python -m atto_detectron.tools.train_net`.
"""

from atto_detectron.tools.train_net import cli

if __name__ == "__main__":
    cli()
