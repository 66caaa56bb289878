"""`--save-clips SECONDS`: each event as its own MP4 in OUT/clips/, from SECONDS before its alarm to SECONDS after
its end was reported, the frames drawn as `Result.plot` draws them (boxes, score, a red border while the alarm is
on). The frames before an alarm wait in a ring buffer; an alarm that comes during another event's post-roll goes
on in the same clip. Clips are fragmented H.264 MP4 (playable while written, and after a kill) named by the alarm
frame: clips/event-000123.mp4.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

CLIP_PATTERN = "clips/event-*.mp4"


class EventClips:
    """Feed every Result with `add`; `close` at the end of the stream ends an open clip."""

    def __init__(self, folder: Path, seconds: float):
        self.folder, self.seconds = Path(folder), seconds
        self.before: deque = deque()
        self.writer = None
        self.after = 0  # post-roll frames left once the event has ended; None while an event is open
        self.open_events = 0
        self.paths: list[Path] = []

    def add(self, result, fps: float | None) -> None:
        from vadgpu.video_file import Mp4Writer

        roll = max(1, round(self.seconds * (fps or 25.0)))
        picture = result.plot()
        picture = picture[: picture.shape[0] - picture.shape[0] % 2, : picture.shape[1] - picture.shape[1] % 2]
        self.open_events += len(result.started) - len(result.ended)
        if self.writer is None and result.started:
            path = self.folder / f"event-{result.frame:06d}.mp4"
            self.writer = Mp4Writer(path, "--save-clips", fragmented=True, atomic=False)
            self.paths.append(path)
            while self.before:
                self.writer.write(self.before.popleft(), fps)
        if self.writer is None:
            self.before.append(picture)
            while len(self.before) > roll:
                self.before.popleft()
            return
        self.writer.write(picture, fps)
        self.after = roll if self.open_events > 0 or result.ended else self.after - 1
        if self.open_events <= 0 and self.after <= 0:
            self.close()

    def close(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()
