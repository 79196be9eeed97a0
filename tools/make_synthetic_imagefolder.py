#!/usr/bin/env python
"""
Generates a small ImageFolder classification dataset (OUT/train/<class>/*.jpg,
OUT/val/<class>/*.jpg) of coloured shapes and textures on noisy backgrounds: learnable
by an AttoNet in minutes on a CPU, and the same for the same seed.
The code and options: atto_detectron/tools/make_synthetic_imagefolder.py (or --help).
"""

from atto_detectron.tools.make_synthetic_imagefolder import cli

if __name__ == "__main__":
    cli()
