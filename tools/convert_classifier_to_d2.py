#!/usr/bin/env python
"""
Converts an AttoNet classifier checkpoint (tools/train_classifier.py) into Detectron2
backbone weights, to initialize Atto-MaskRCNN through MODEL.WEIGHTS.
The code and options: atto_detectron/tools/convert_classifier_to_d2.py (or --help).
"""

from atto_detectron.tools.convert_classifier_to_d2 import cli

if __name__ == "__main__":
    cli()
