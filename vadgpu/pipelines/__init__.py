"""Datasets and labels (catalog), synthetic data (synth), probing and transcoding (prepare), DALI clip pipelines
(loader) and the baseline torch DataLoader (baseline)."""
