"""Figures printed in the paper (Wong et al., 2019), to show beside measured ones."""

__all__ = ["TABLE2", "ATTO_MASKRCNN"]

# Table 2 (ImageNet50, 51-way classifiers, 224x224): top-1 (%), mult-adds, parameters,
# NetScore.
TABLE2 = {
    "MobileNet-V1": {"top1": 64.52, "mult_adds": 567.5e6, "params": 3.26e6, "netscore": 69.71},
    "MobileNet-V2": {"top1": 68.68, "mult_adds": 299.7e6, "params": 2.29e6, "netscore": 75.11},
    "ShuffleNet-V2": {"top1": 65.00, "mult_adds": 140.1e6, "params": 1.32e6, "netscore": 79.85},
    "AttoNet-A": {"top1": 73.00, "mult_adds": 424.8e6, "params": 2.97e6, "netscore": 73.53},
    "AttoNet-B": {"top1": 71.10, "mult_adds": 277.5e6, "params": 1.87e6, "netscore": 76.93},
    "AttoNet-C": {"top1": 69.60, "mult_adds": 139.9e6, "params": 1.06e6, "netscore": 81.99},
    "AttoNet-D": {"top1": 66.30, "mult_adds": 57.5e6, "params": 0.32e6, "netscore": 90.21},
}

# Section 4.2: Atto-MaskRCNN on Pascal VOC 2012 (input size not stated in the paper).
ATTO_MASKRCNN = {
    "params": 18.3e6,
    "mult_adds": 195e9,
    "params_ratio_vs_r50": 2.0,  # "~2x fewer parameters"
    "mult_adds_ratio_vs_r50": 5.0,  # "~5x fewer multiply-add operations"
    "box_ap": 65.5,
    "mask_ap": 60.0,
}
