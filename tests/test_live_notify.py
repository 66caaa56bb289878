"""Notifications of live events (live/notify.py): a webhook on 127.0.0.1, a dead endpoint that must neither stop
nor slow scoring, and MQTT through a real local broker."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
import torch

from cli_helpers import invoke
from http_helpers import LocalServer

from vadgpu.checkpoint import save_checkpoint
from vadgpu.live.events import Event
from vadgpu.live.notify import Mqtt, Notifiers, Webhook, parse_mqtt
from vadgpu.models.registry import build_model
from vadgpu.optional import available

EVENT = Event(3, 0.12, 9, 0.36, 5, 4.2, frames=7, alarm_frame=3, source="cam", model="m", threshold=1.0)


class Collector:
    """An HTTP server on 127.0.0.1 that keeps the JSON bodies POSTed to it."""

    def __init__(self):
        self.bodies: list[dict] = []
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def do_POST(self):
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

        self.server = LocalServer(Handler)
        self.url = f"{self.server.url}/hook"

    def close(self):
        self.server.close()


def _silent_endpoint():
    """A socket that accepts connections (in its backlog) and never answers: every POST times out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1000)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def test_a_webhook_posts_each_event_when_it_starts_and_ends():
    server = Collector()
    try:
        hook = Webhook(server.url, timeout=5)
        hook.send("start", EVENT)
        hook.send("end", EVENT)
        hook.close(wait=10)
    finally:
        server.close()
    assert [b["kind"] for b in server.bodies] == ["alarm", "end"]
    assert server.bodies[1]["peak_score"] == 4.2 and server.bodies[1]["source"] == "cam"
    assert (hook.sent, hook.failed, hook.dropped) == (2, 0, 0)


def test_a_dead_endpoint_never_blocks_and_its_losses_are_counted():
    sock, url = _silent_endpoint()
    try:
        hook = Webhook(url, timeout=0.3, retries=1, retry_delay=0.1, queue_size=10)
        begun = time.perf_counter()
        for _ in range(500):
            hook.send("end", EVENT)
        sending = time.perf_counter() - begun
        begun = time.perf_counter()
        hook.close(wait=1)
        closing = time.perf_counter() - begun
    finally:
        sock.close()
    assert sending < 2.0, sending  # 500 events queued or dropped at once (measured: a few ms)
    assert closing < 5.0, closing  # the drain is bounded
    assert hook.sent == 0 and hook.dropped >= 480 and hook.dropped + hook.failed == 500
    # refused connections (nothing listens) fail fast, are retried, and are counted too
    dead = Webhook(url, timeout=0.3, retries=2, retry_delay=0.05)
    dead.send("end", EVENT)
    dead.close(wait=3)
    assert dead.failed + dead.dropped == 1


@pytest.mark.av
@pytest.mark.skipif(not available("av"), reason="live scoring reads video files with PyAV")
def test_scoring_with_a_dead_webhook_is_not_slower(tmp_path):
    from vadgpu import Detector
    from vadgpu.data.synth import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "synth", seed=1, train_videos=1, test_videos=1, frames=40,
                                  frame_size=(48, 64), formats=("avi",))
    rng = np.random.default_rng(0)
    scores = {"names": ["01"], "dataset": "synthetic", "root": str(root), "variant": None,
              **{kind: [torch.from_numpy(rng.normal(0.05, 0.01, 200))] for kind in ("patch-max", "psnr", "mse")}}
    torch.manual_seed(0)
    model = build_model("ddl-tiny-cpu")
    save_checkpoint(tmp_path / "model.pt", {"model_name": "ddl-tiny-cpu", "model_config": model.config.to_dict(),
                                            "model": model.state_dict(), "epoch": 1, "step": 1,
                                            "train_scores": scores})
    detector = Detector.load(tmp_path / "model.pt", "cpu", threshold=-1e9)  # one event over the whole video
    avi = root / "testing" / "videos" / "01.avi"
    plain = [r.score for r in detector.stream(avi)]  # the first stream also pays for start-up: not timed
    begun = time.perf_counter()
    assert [r.score for r in detector.stream(avi)] == plain
    plain_s = time.perf_counter() - begun
    sock, url = _silent_endpoint()
    try:
        hook = Webhook(url, timeout=5, retries=2)  # a POST that blocked scoring would cost it >= 10 s per event
        notify = Notifiers([hook])
        waits = []

        def on_event(kind, event):
            started = time.perf_counter()
            notify(kind, event)
            waits.append(time.perf_counter() - started)

        begun = time.perf_counter()
        hooked = [r.score for r in detector.stream(avi, on_event=on_event)]
        hooked_s = time.perf_counter() - begun
        hook.close(wait=0.5)
    finally:
        sock.close()
    assert hooked == plain and len(waits) == 2  # the alarm and the end
    assert max(waits) < 0.1, waits  # each notification returns at once (measured: well under 1 ms)
    assert hooked_s < 2 * plain_s + 8, (hooked_s, plain_s)  # the POSTs time out on their own thread
    assert hook.sent == 0


def test_mqtt_specs():
    assert parse_mqtt("localhost/vadgpu/cam1") == ("localhost", 1883, "vadgpu/cam1")
    assert parse_mqtt("10.0.0.2:1884/alarms") == ("10.0.0.2", 1884, "alarms")
    with pytest.raises(Exception, match="HOST"):
        parse_mqtt("localhost")


@pytest.mark.skipif(shutil.which("mosquitto") is None and not __import__("os").path.exists("/usr/sbin/mosquitto"),
                    reason="no MQTT broker here (Debian: apt-get install mosquitto)")
@pytest.mark.skipif(not available("paho.mqtt.client"), reason="--mqtt needs paho-mqtt (pip install paho-mqtt)")
def test_mqtt_publishes_each_event_to_a_local_broker(tmp_path):
    import paho.mqtt.client as mqtt

    broker = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([broker, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    received, subscribed = [], threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.on_connect = lambda client, *_: client.subscribe("vadgpu/#", qos=1)
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.on_message = lambda _c, _u, message: received.append(json.loads(message.payload))
    try:
        deadline = time.time() + 20
        while True:
            try:
                listener.connect("127.0.0.1", port)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        listener.loop_start()
        assert subscribed.wait(20)
        publisher = Mqtt(f"127.0.0.1:{port}/vadgpu/cam1")
        publisher.send("start", EVENT)
        publisher.send("end", EVENT)
        deadline = time.time() + 20
        while len(received) < 2 and time.time() < deadline:
            time.sleep(0.1)
        publisher.close()
    finally:
        listener.loop_stop()
        listener.disconnect()
        proc.terminate()
        proc.wait(timeout=10)
    assert [m["kind"] for m in received] == ["alarm", "end"] and received[0]["peak_score"] == 4.2
    assert publisher.dropped == 0


@pytest.mark.av
@pytest.mark.skipif(not available("av"), reason="live scoring reads video files with PyAV")
def test_the_cli_posts_its_events(tmp_path):
    from vadgpu.data.synth import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "synth", seed=1, train_videos=1, test_videos=1, frames=20,
                                  frame_size=(48, 64), formats=("avi",))
    torch.manual_seed(0)
    model = build_model("ddl-tiny-cpu")
    save_checkpoint(tmp_path / "model.pt", {"model_name": "ddl-tiny-cpu", "model_config": model.config.to_dict(),
                                            "model": model.state_dict(), "epoch": 1, "step": 1})
    server = Collector()
    try:
        code, output = invoke(["score", str(root / "testing" / "videos" / "01.avi"), "--live", "--checkpoint",
                               str(tmp_path / "model.pt"), "--out", str(tmp_path / "out"), "--device", "cpu",
                               "--norm", "none", "--threshold", "-1e9", "--webhook", server.url])
    finally:
        server.close()
    assert code == 0, output
    events = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert [b["kind"] for b in server.bodies] == ["alarm", "end"]
    assert server.bodies[1]["end_frame"] == events[0]["end_frame"] == 19
    assert "webhook: 2 sent, 0 failed, 0 dropped" in output
