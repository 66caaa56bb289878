"""Benchmarks: the data path (`vadgpu bench throughput`, throughput.py), the scoring path (`vadgpu bench score`,
score.py) and what they build on.

    system.py      the machine and library versions a result was measured with; peak memory
    timing.py      warm-up + timed repeats of a work stream -> median / min / max rates
    decode.py      the decode limit: every frame decoded once, one process and a process pool
    throughput.py  the stages side by side (decode limit, baseline, DALI pipeline, kernels, training) + table
    stages.py      the stage marks of the scoring path and the StageClock that times them (no-op without one)
    score.py       `vadgpu bench score`: score, eval and live end to end, stage by stage; score_report.py its table
"""
