#!/usr/bin/env python
"""
Machine-driven design exploration (see README.md beside this file and
``design_exploration/cli.py`` for the options)::

    python projects/DesignExploration/explore_design.py --task classification \\
        --data datasets/synth_imagefolder \\
        --requirements projects/DesignExploration/configs/synth_classification.yaml \\
        --budget 16 --output output/design_demo
"""

from design_exploration.cli import cli

if __name__ == "__main__":
    cli()
