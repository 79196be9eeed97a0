#!/usr/bin/env python
"""
Writes the generated VOC-layout instance segmentation data (the embedded default that
`make demo` trains on) as <out>/VOC2012/{JPEGImages, SegmentationObject,
SegmentationClass, Annotations, ImageSets/Segmentation/{train,val,trainval}.txt}.
The code and options: atto_detectron/tools/make_synthetic_voc.py (or --help).
"""

from atto_detectron.tools.make_synthetic_voc import cli

if __name__ == "__main__":
    cli()
