"""Clip loaders: the clip index (clip_index), the DALI pipelines (dali_pipelines) and their loader (loader), and
the baseline torch DataLoader with the same interface (baseline). The datasets they read are in `vadgpu.data`."""
