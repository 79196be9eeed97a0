#!/usr/bin/env python
"""
Trains and evaluates an AttoNet classifier on an ImageFolder dataset (ImageNet50 in the
paper): DATA_ROOT/train/<class>/*.jpg and DATA_ROOT/val/<class>/*.jpg.
The code and options: atto_detectron/tools/train_classifier.py (or --help).
"""

from atto_detectron.tools.train_classifier import cli

if __name__ == "__main__":
    cli()
