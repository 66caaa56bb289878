"""Running the `vadgpu` command inside the test process, and reading the CSV files it writes."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from vadgpu.cli.main import cli
from vadgpu.optional import available

# why a test that runs ONNX files is skipped (pytest.importorskip's reason)
EXPORT_EXTRA = "needs the export extra (onnx, onnxruntime): pip install 'vadgpu[export]'"
# the mark of a test that exports and runs ONNX files
needs_export = pytest.mark.skipif(not (available("onnx") and available("onnxruntime")), reason=EXPORT_EXTRA)


def invoke(args: list[str]) -> tuple[int, str]:
    """`vadgpu ARGS` through click's runner: (exit code, output); an unexpected exception propagates."""
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result.exit_code, result.output


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
