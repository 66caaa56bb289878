"""Notifications of live events: an HTTP webhook and MQTT, never in the way of scoring.

Each event is sent twice: when its alarm goes on (`"kind": "alarm"`, what someone can act on) and when it is
finished (`"kind": "end"`, with its end and peak), as one JSON object: `kind` and the event's fields
(live/events.py's Event: frames, stream and wall times, source, model, thresholds, peak score and boxes).

`Webhook` POSTs from a background thread fed by a bounded queue: `send` never waits (a full queue drops the
message, counted and logged), each POST has a timeout and a few retries with a growing pause, and a delivery that
still fails is counted and logged. `close` gives the queue a few seconds to drain. `Mqtt` publishes with paho-mqtt
(the `alarms` extra) through its own network thread, QoS 1, with a bounded queue of its own.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict

from vadgpu.errors import VadgpuError

log = logging.getLogger("vadgpu")

KINDS = {"start": "alarm", "end": "end"}


def event_message(kind: str, event) -> bytes:
    """The JSON body for an event that started ("start") or finished ("end")."""
    record = {"kind": KINDS.get(kind, kind), **asdict(event)}
    return json.dumps(record).encode("utf-8")


class Webhook:
    """POST each event to `url` (module docstring)."""

    def __init__(self, url: str, timeout: float = 5.0, retries: int = 3, retry_delay: float = 1.0,
                 queue_size: int = 100):
        if not re.match(r"^https?://", url):
            raise VadgpuError(f"--webhook {url}: give an http:// or https:// URL")
        self.url, self.timeout, self.retries, self.retry_delay = url, timeout, retries, retry_delay
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        self.sent = self.failed = self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="vadgpu-webhook", daemon=True)
        self._thread.start()

    def send(self, kind: str, event) -> None:
        """Queue the event; never blocks (a full queue drops it, counted and logged)."""
        try:
            self.queue.put_nowait(event_message(kind, event))
        except queue.Full:
            self.dropped += 1
            log.warning(f"--webhook {self.url}: the queue is full (the endpoint is slow or down); dropped an event "
                        f"({self.dropped} so far)")

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()

    def _work(self) -> None:
        while True:
            body = self.queue.get()
            if body is None:
                return
            for attempt in range(self.retries + 1):
                try:
                    self._post(body)
                    self.sent += 1
                    break
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    # the last attempt, or closing (no waiting for a retry then)
                    if attempt == self.retries or self._stop.wait(self.retry_delay * 2 ** attempt):
                        self.failed += 1
                        log.warning(f"--webhook {self.url}: delivery failed after {attempt + 1} attempt(s) "
                                    f"({getattr(exc, 'reason', exc)}); {self.failed} failed so far")
                        break

    def close(self, wait: float = 5.0) -> None:
        """Let the queue drain for up to `wait` seconds, then stop; what is left counts as dropped."""
        deadline = time.monotonic() + wait
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        left = 0
        while True:
            try:
                left += self.queue.get_nowait() is not None
            except queue.Empty:
                break
        self.dropped += left
        self.queue.put(None)
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()) + self.timeout + 1.0)  # one POST at most

    def report(self) -> str:
        return f"webhook: {self.sent} sent, {self.failed} failed, {self.dropped} dropped"


def parse_mqtt(spec: str) -> tuple[str, int, str]:
    """HOST[:PORT]/TOPIC -> (host, port, topic); the port defaults to 1883."""
    match = re.match(r"^(?:mqtt://)?(?P<host>[^/:]+)(?::(?P<port>\d+))?/(?P<topic>.+)$", spec)
    if match is None:
        raise VadgpuError(f"--mqtt {spec}: give HOST[:PORT]/TOPIC, e.g. localhost/vadgpu/camera1")
    return match["host"], int(match["port"] or 1883), match["topic"]


class Mqtt:
    """Publish each event to an MQTT broker (module docstring)."""

    def __init__(self, spec: str, queue_size: int = 100):
        from vadgpu.optional import require

        mqtt = require("paho.mqtt.client", "--mqtt")
        self.host, self.port, self.topic = parse_mqtt(spec)
        self.sent = self.dropped = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"vadgpu-{id(self):x}")
        self.client.max_queued_messages_set(queue_size)
        self.client.reconnect_delay_set(1, 30)
        self.client.connect_async(self.host, self.port)
        self.client.loop_start()  # paho's network thread connects, publishes and reconnects
        self._mqtt = mqtt

    def send(self, kind: str, event) -> None:
        info = self.client.publish(self.topic, event_message(kind, event), qos=1)
        if info.rc == self._mqtt.MQTT_ERR_SUCCESS or info.rc == self._mqtt.MQTT_ERR_NO_CONN:
            self.sent += 1  # queued: paho delivers it once connected
        else:
            self.dropped += 1
            log.warning(f"--mqtt {self.host}:{self.port}: dropped an event ({self._mqtt.error_string(info.rc)}); "
                        f"{self.dropped} so far")

    def close(self, wait: float = 5.0) -> None:
        deadline = time.monotonic() + wait
        while self.client.want_write() and time.monotonic() < deadline:  # still sending
            time.sleep(0.05)
        self.client.disconnect()
        self.client.loop_stop()

    def report(self) -> str:
        return f"mqtt: {self.sent} published, {self.dropped} dropped"


class Notifiers:
    """The notifiers of a run as one `on_event(kind, event)`; a notifier's error is logged, never raised."""

    def __init__(self, notifiers: list):
        self.notifiers = notifiers

    def __call__(self, kind: str, event) -> None:
        for notifier in self.notifiers:
            try:
                notifier.send(kind, event)
            except Exception as exc:  # noqa: BLE001  a notification never stops scoring
                log.warning(f"notification failed: {exc}")

    def close(self) -> list[str]:
        for notifier in self.notifiers:
            notifier.close()
        return [notifier.report() for notifier in self.notifiers]
