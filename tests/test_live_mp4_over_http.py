"""Live scoring of an MP4 over HTTP from a server without range requests: a file with its index (moov atom) at the
end cannot be read that way, and the error says why and what to do; the same frames with the index in front
(faststart) are scored."""

from __future__ import annotations

import http.server
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from http_helpers import LocalServer

from vadgpu.checkpoint import save_checkpoint
from vadgpu.cli.main import cli
from vadgpu.models.registry import build_model

av = pytest.importorskip("av", reason="live scoring reads streams with PyAV")
FRAMES = 60


def _write_mp4(path: Path, faststart: bool) -> Path:
    """FRAMES frames of noise (so that the media data is far larger than FFmpeg's first read) as H.264 MP4."""
    rng = np.random.default_rng(0)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = 48, 64
        stream.pix_fmt = "yuv420p"
        for _ in range(FRAMES):
            image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = path.read_bytes()
    assert (data.find(b"moov") < data.find(b"mdat")) == faststart
    return path


class _NoRangeServer:
    """Files from `folder` on 127.0.0.1, always whole (status 200): a Range header is ignored."""

    def __init__(self, folder: Path):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *_args):
                pass

            def do_GET(self):
                data = (folder / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = LocalServer(Handler)
        self.url = self.server.url

    def close(self):
        self.server.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("mp4http")
    _write_mp4(base / "plain.mp4", faststart=False)
    _write_mp4(base / "faststart.mp4", faststart=True)
    torch.manual_seed(0)
    model = build_model("ddl-tiny-cpu")
    save_checkpoint(base / "model.pt", {"model_name": "ddl-tiny-cpu", "model_config": model.config.to_dict(),
                                        "model": model.state_dict(), "epoch": 1, "step": 1})
    server = _NoRangeServer(base)
    yield base, server.url
    server.close()


def _score(base: Path, url: str, out: str):
    return CliRunner().invoke(cli, ["score", url, "--checkpoint", str(base / "model.pt"), "--out", str(base / out),
                                    "--device", "cpu", "--norm", "none", "--retries", "3", "--retry-delay", "5",
                                    "--drop-frames", "never"])  # files served over HTTP: every frame


def test_plain_mp4_without_range_requests_is_one_error_with_the_remedy(served):
    base, url = served
    result = _score(base, f"{url}/plain.mp4", "plain")
    assert result.exit_code == 1
    assert "moov atom" in result.output and "range requests" in result.output
    assert "-movflags +faststart" in result.output
    assert "reopening" not in result.output  # no retries: the same file would fail the same way


def test_faststart_mp4_from_the_same_server_is_scored(served):
    base, url = served
    result = _score(base, f"{url}/faststart.mp4", "faststart")
    assert result.exit_code == 0, result.output
    assert len((base / "faststart" / "scores.csv").read_text().splitlines()) == FRAMES + 1
