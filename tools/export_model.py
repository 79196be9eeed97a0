#!/usr/bin/env python
"""
Exports Atto-MaskRCNN (or its backbone) to TorchScript or ONNX, optionally
INT8. The code, usage and options: atto_detectron/tools/export_model.py (or --help);
an installed package runs the same as `python -m atto_detectron.tools.export_model`.
"""

from atto_detectron.tools.export_model import cli

if __name__ == "__main__":
    cli()
