"""The `vadgpu` command group. Command modules import heavy libraries inside their functions so `--help` is fast."""
