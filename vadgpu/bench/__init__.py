"""Benchmarks of the data path: `vadgpu bench throughput` (throughput.py) and what it builds on.

    system.py      the machine and library versions a result was measured with; peak memory
    timing.py      warm-up + timed repeats of a work stream -> median / min / max rates
    decode.py      the decode limit: every frame decoded once, one process and a process pool
    throughput.py  the stages side by side (decode limit, baseline, DALI pipeline, kernels, training) + table
"""
