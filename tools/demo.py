#!/usr/bin/env python
"""
Draws a model's instance predictions on images, a video or a webcam. The code, usage
and options: atto_detectron/tools/demo.py (or --help);
an installed package runs the same as `python -m atto_detectron.tools.demo`.
"""

from atto_detectron.tools.demo import cli

if __name__ == "__main__":
    cli()
