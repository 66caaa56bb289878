"""Evaluation: the eval and score runs, metrics, reports and plots (how a frame gets its score: vadgpu/scoring).

    runner.py            evaluate(...) a checkpoint on a dataset's test split; score_input(...) one unlabelled video
    calibrate.py         the calibration record eval scores with; `vadgpu calibrate`
    authors_protocol.py  the dual-path authors' scoring per dataset (`--protocol dualpath-authors`)
    metrics.py           micro / macro AUC, EER, average precision (scikit-learn)
    report.py            metrics.json, scores.csv, objects CSVs, the PNGs; plots.py: score curves, ROC curve
    heatmap.py           the heatmap MP4 of `vadgpu score --heatmap-mp4`
"""
