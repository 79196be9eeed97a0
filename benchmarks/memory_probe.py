"""
Peak memory of one model, measured in this (fresh) process; prints one JSON line.
Run by :func:`benchmarks.engines.measure_peak_memory`:

    python -m benchmarks.memory_probe --config-file configs/atto_maskrcnn_voc.yaml \
        --height 800 --width 1067 --engine pytorch --mode inference
"""

import argparse
import gc
import json
import sys

import torch

from atto_detectron.deploy.allocator import ALLOCATORS, release_freed_memory, use_allocator
from atto_detectron.deploy.inputs import image_tensor, synthetic_image
from benchmarks.engines import (
    ENGINES,
    build_benchmark_model,
    make_predictor,
    make_train_step,
    reset_peak_rss,
    rss_bytes,
    synthetic_training_batch,
)

__all__ = ["main"]

MB = 1024 * 1024


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--engine", choices=ENGINES, default="pytorch")
    parser.add_argument("--mode", choices=["inference", "train"], default="inference")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1, help="images per training step")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="default",
        help="keep-freed: glibc malloc keeps freed memory for reuse (keep_freed_memory)",
    )
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[])
    return parser


def _tensor_megabytes(model) -> float:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / MB


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    use_allocator(args.allocator)
    cuda = args.device.startswith("cuda")
    base = rss_bytes()
    cfg, model = build_benchmark_model(
        args.config_file, args.opts, device=args.device, fixed_workload=args.mode == "inference"
    )
    after_build = rss_bytes()
    weights_mb = _tensor_megabytes(model)

    if args.mode == "inference":
        image = image_tensor(synthetic_image(args.height, args.width)).to(args.device)
        predict = make_predictor(model, args.engine, image)
        # The predictor holds its own (fused or exported) copy: free the built model so
        # that its weights do not count twice.
        del model
        # Warm-up on a small image: loads code and kernels and sets up the runtime
        # without leaving buffers of the measured size behind.
        predict(image_tensor(synthetic_image(64, 85)).to(args.device))

        def run():
            predict(image)

    else:
        batch = synthetic_training_batch(
            args.batch_size,
            (args.height, args.width),
            cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            device=args.device,
        )
        run = make_train_step(model, batch)
        run()  # warm-up: allocates gradients and the optimizer's momentum

    gc.collect()
    release_freed_memory()  # glibc keeps freed heap pages resident unless asked
    before = rss_bytes()
    reset_supported = reset_peak_rss()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    run()
    peak = rss_bytes(peak=True)
    result = {
        "peak_mb": peak / MB,
        "base_mb": base / MB,
        "model_mb": (after_build - base) / MB,
        "weights_mb": weights_mb,
        "run_increase_mb": (peak - before) / MB,
        "peak_above_base_mb": (peak - base) / MB,
        "peak_reset": reset_supported,
    }
    if args.mode == "inference":
        result["inference_mb"] = weights_mb + result["run_increase_mb"]
    if cuda:
        # On the GPU the model's memory is what the caching allocator handed out at the
        # peak (weights included), not the host process's resident memory.
        torch.cuda.synchronize()
        result["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / MB
        if args.mode == "inference":
            result["inference_mb"] = result["cuda_peak_allocated_mb"]
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
