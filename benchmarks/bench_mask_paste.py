"""
Mask pasting on CPU: Detectron2's paste against atto_detectron's separable paste.

Both paste the same raw masks into the image: those of a detector at its config's test
size and workload (random weights, the configs' maxima of proposals and detections, as
the other benchmarks), timed in alternation in one process; the section says how much
faster the separable paste is (median of the per-round ratios) and how many pixels of
the pasted masks differ (only at the threshold, by float rounding)::

    python -m benchmarks.bench_mask_paste --config-file configs/atto_maskrcnn_voc.yaml \\
        --repeats 20 --output-dir output/benchmarks/mask_paste

writes ``mask_paste.json`` there and the "mask-paste" section of docs/DEPLOYMENT.md
(``--from-json`` rewrites the section from a committed JSON).
"""

import argparse
import os
import shlex
import sys
import time
from collections import OrderedDict

import torch

from detectron2.layers.mask_ops import paste_masks_in_image
from detectron2.structures import Boxes

from atto_detectron.analysis.formatting import format_number
from atto_detectron.deploy import detector_inputs, image_tensor, synthetic_image
from atto_detectron.deploy.allocator import ALLOCATORS
from atto_detectron.modeling import paste_masks_separable
from benchmarks.common import (
    REPO_ROOT,
    describe_cpu,
    machine_info,
    setup_process,
    write_doc_section,
)
from benchmarks.engines import build_benchmark_model, paired_ratio, summarize_seconds
from benchmarks.roofline import add_docs_arguments, measure_or_regenerate

DOC_SECTION = "mask-paste"
JSON_NAME = "mask_paste.json"
DEPLOYMENT_DOC = os.path.join(REPO_ROOT, "docs", "DEPLOYMENT.md")
PASTES = OrderedDict(
    [
        ("detectron2", "Detectron2's `paste_masks_in_image`"),
        ("separable", "`atto_detectron.modeling.paste_masks_separable`"),
    ]
)


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config-file",
        default="configs/atto_maskrcnn_voc.yaml",
        metavar="FILE",
        help="the detector whose raw masks are pasted (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)"
    )
    parser.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="default",
        help="glibc malloc as it starts (default) or keeping freed memory for reuse",
    )
    parser.add_argument(
        "--output-dir",
        default=os.path.join(REPO_ROOT, "output", "benchmarks", "mask_paste"),
        metavar="DIR",
    )
    add_docs_arguments(parser, DOC_SECTION, JSON_NAME, DEPLOYMENT_DOC)
    return parser


def raw_masks(config_file: str):
    """The raw ``(N, M, M)`` masks and ``(N, 4)`` boxes of the config's fixed workload."""
    cfg, model = build_benchmark_model(config_file)
    height = cfg.INPUT.MIN_SIZE_TEST
    width = min(int(round(height * 4 / 3)), cfg.INPUT.MAX_SIZE_TEST)
    image = image_tensor(synthetic_image(height, width, seed=0))
    with torch.no_grad():
        (raw,) = model.inference(detector_inputs(image), do_postprocess=False)
    return raw.pred_masks[:, 0], raw.pred_boxes.tensor, (height, width)


def run(args, argv) -> dict:
    setup_process(args)
    masks, boxes, size = raw_masks(args.config_file)
    pastes = {
        "detectron2": lambda: paste_masks_in_image(masks, Boxes(boxes), size, threshold=0.5),
        "separable": lambda: paste_masks_separable(masks, boxes, size, threshold=0.5),
    }
    seconds = {name: [] for name in pastes}
    for round_index in range(args.warmup + args.repeats):
        for name, paste in pastes.items():  # alternating: the same load for both
            start = time.perf_counter()
            paste()
            if round_index >= args.warmup:
                seconds[name].append(time.perf_counter() - start)
    expected, pasted = pastes["detectron2"](), pastes["separable"]()
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return OrderedDict(
        command="python -m benchmarks.bench_mask_paste " + shlex.join(argv),
        machine=machine_info(args.threads, args.allocator),
        config=args.config_file,
        image_size=list(size),
        masks=int(masks.shape[0]),
        mask_size=int(masks.shape[-1]),
        box_size_median=[float(widths.median()), float(heights.median())],
        repeats=args.repeats,
        warmup=args.warmup,
        latency_s={name: summarize_seconds(s) for name, s in seconds.items()},
        seconds=seconds,
        speedup_paired=paired_ratio(seconds["detectron2"], seconds["separable"]),
        mask_pixels=int(expected.sum()),
        differing_pixels=int((expected != pasted).sum()),
    )


def format_markdown(report) -> str:
    machine = report["machine"]
    h, w = report["image_size"]
    lines = [
        "Written by `benchmarks/bench_mask_paste.py` from its `mask_paste.json`:",
        "",
        "```bash",
        report["command"],
        "```",
        "",
        f"Machine: {describe_cpu(machine)}, {machine['threads']} threads, torch "
        f"{machine['torch']}, allocator {machine['allocator']}. {report['masks']} masks of "
        f"{report['mask_size']} x {report['mask_size']} pasted into a {h} x {w} image "
        f"(`{report['config']}` at its test size, the benchmarks' fixed workload; median "
        f"box {report['box_size_median'][0]:.0f} x {report['box_size_median'][1]:.0f} px), "
        f"the two pastes alternating, {report['repeats']} rounds after {report['warmup']}.",
        "",
        "| paste | median ms [min, max] |",
        "|:--|--:|",
    ]
    for name, label in PASTES.items():
        stats = report["latency_s"][name]
        lines.append(
            f"| {label} | {format_number(1000 * stats['median'], digits=1)} "
            f"[{format_number(1000 * stats['min'], digits=1)}, "
            f"{format_number(1000 * stats['max'], digits=1)}] |"
        )
    lines += [
        "",
        f"The separable paste is {report['speedup_paired']:.2f}x as fast (median of the "
        f"per-round ratios). Pixels that differ: {report['differing_pixels']:,} of the "
        f"{report['mask_pixels']:,} in Detectron2's masks (where a value lies within float "
        "rounding of the 0.5 threshold; random weights put many values there).",
    ]
    return "\n".join(lines)


def write_docs(report, path: str) -> str:
    return write_doc_section(DOC_SECTION, format_markdown(report), path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = get_parser().parse_args(argv)
    return measure_or_regenerate(args, argv, run, JSON_NAME, write_docs)


if __name__ == "__main__":
    main()
