"""
Side-by-side measurements of the models (not tests), run from the repository root as
modules, e.g. ``python -m benchmarks.bench_inference``: latency, memory and mult-adds
(bench_inference), training speed (bench_train), per-part profile (profile_inference)
and roofline (roofline). ``common`` holds what the scripts share, ``engines`` how a
model runs in each engine, ``memory_probe`` the fresh process that measures peak memory.
"""
