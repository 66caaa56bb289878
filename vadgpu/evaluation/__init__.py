"""Evaluation: per-frame scores, the frame-level protocol, metrics, plots, and the eval/score runners.

    scores.py    patch-max / PSNR / mixed scores of a centre frame and its reconstruction (on the device)
    protocol.py  edge frames, smoothing, normalisation (every choice recorded in metrics.json)
    metrics.py   micro / macro AUC, EER, average precision (scikit-learn)
    plots.py     score curves with anomalous frames shaded, ROC curve
    runner.py    evaluate(...) a checkpoint on a dataset's test split; score_input(...) one unlabelled video
"""
