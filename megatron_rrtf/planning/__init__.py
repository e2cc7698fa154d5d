"""Sizing a training run before booking GPUs: per-GPU memory of a parallel layout (memory.py) and
the layouts that fit, ranked by a stated throughput model (layouts.py); `mrrtf plan`."""
