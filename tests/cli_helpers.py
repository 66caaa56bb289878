"""Running the `vadgpu` command inside the test process, and reading the CSV files it writes."""

from __future__ import annotations

import csv

from click.testing import CliRunner

from vadgpu.cli.main import cli

# why a test that runs ONNX files is skipped (pytest.importorskip's reason)
EXPORT_EXTRA = "needs the export extra (onnx, onnxruntime): pip install 'vadgpu[export]'"


def invoke(args: list[str]) -> tuple[int, str]:
    """`vadgpu ARGS` through click's runner: (exit code, output); an unexpected exception propagates."""
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result.exit_code, result.output


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
