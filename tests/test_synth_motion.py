"""The `motion` synthetic scene: deterministic, read by the catalog, anomalous pedestrians drawn exactly like the
others, each anomaly moving as its kind says, labels on those frames."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vadgpu.cli.main import cli
from vadgpu.data import synth_motion as M
from vadgpu.data.catalog import open_dataset
from vadgpu.data.synth import SCENES, make_synthetic_dataset
from vadgpu.data.synth_scene import SKIN, VideoPlan, unit

HEIGHT, WIDTH = M.FRAME_SIZE
FRAMES = 200
MAGENTA = np.array([255, 0, 255], np.uint8)  # no sprite colour is near it: every other pixel is the sprite
PALETTE = {(30, 30, 35), (200, 60, 50), (60, 80, 170), (230, 230, 225), (90, 60, 40), (240, 190, 60), SKIN}


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.av
def test_same_seed_same_files_manifest_and_catalog(tmp_path):
    kwargs = dict(train_videos=1, test_videos=4, frames=30, formats=("avi",), scene="motion")
    first = make_synthetic_dataset(tmp_path / "a", seed=7, **kwargs)
    assert _digest(make_synthetic_dataset(tmp_path / "b", seed=7, **kwargs)) == _digest(first)
    other = make_synthetic_dataset(tmp_path / "c", seed=8, **kwargs)
    assert _digest(other)["testing/videos/01.avi"] != _digest(first)["testing/videos/01.avi"]
    manifest = json.loads((first / "synthetic.json").read_text())
    assert (manifest["scene"], manifest["width"], manifest["height"]) == ("motion", WIDTH, HEIGHT)
    assert manifest["anomaly_kinds"] == list(M.ANOMALY_KINDS)
    assert [event["kind"] for event in manifest["anomalies"]] == list(M.ANOMALY_KINDS)
    dataset = open_dataset("synthetic", first)
    assert [v.name for v in dataset.train] == ["01"] and len(dataset.test) == 4
    for video, event in zip(dataset.test, manifest["anomalies"]):
        assert video.path.suffix == ".avi" and video.labels.shape == (30,) and video.labels[0] == 0
        assert np.flatnonzero(video.labels)[[0, -1]].tolist() == [event["first_frame"], event["last_frame"]]


def _plan(seed: int, kind: str | None, frames: int = FRAMES) -> VideoPlan:
    index = M.ANOMALY_KINDS.index(kind) if kind else 0  # each kind its own video, as make_synthetic_dataset does
    return M.plan_video(np.random.default_rng([seed, 2, index]), WIDTH, HEIGHT, frames, kind)


def _alone(walker, t: int) -> np.ndarray:
    """(H, W) bool: the pixels of `walker` drawn alone at frame t."""
    scenery = np.broadcast_to(MAGENTA, (HEIGHT, WIDTH, 3)).copy()
    frame = M.render(scenery, VideoPlan([walker], np.zeros(1, np.uint8)), t)
    return np.any(frame != MAGENTA, axis=-1), frame


def _looks(walker, t: int, render=None) -> dict:
    mask, frame = _alone(walker, t) if render is None else render(t)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    pixels = frame[mask]
    colours = {tuple(int(c) for c in colour) for colour, count in zip(*np.unique(pixels, axis=0, return_counts=True))
               if count >= 0.05 * len(pixels)}  # the solid colours (antialiased edges blend with what is under them)
    return {"height": rows[-1] - rows[0] + 1, "width": cols[-1] - cols[0] + 1, "area": int(mask.sum()),
            "mean": pixels.mean(0), "colours": colours, "clothes": getattr(walker, "shirt", None) and (
                walker.shirt, walker.trousers)}


def _in_view_frame(walker) -> int:
    """The frame at which the walker is nearest the image centre."""
    times = [t for t in range(FRAMES) if t >= walker.t0]
    return min(times, key=lambda t: abs(walker.position(t)[0] - WIDTH / 2))


def _normal_looks(plans) -> list[dict]:
    looks = []
    for plan in plans:
        for walker in plan.walkers:
            if walker is not plan.anomaly:
                x1, y1, x2, y2 = M.box(walker, _in_view_frame(walker), HEIGHT)
                if x1 > 0 and x2 < WIDTH:
                    looks.append(_looks(walker, _in_view_frame(walker)))
    return looks


def _inside(value, values, slack=0.0) -> bool:
    return min(values) - slack <= value <= max(values) + slack


def test_anomalous_pedestrians_look_like_the_normal_ones():
    """Each anomalous pedestrian's sprite, drawn alone at a labelled frame: its height and covered area lie within
    the normal pedestrians' of the same videos, its solid colours are among those they wear, and where a normal
    pedestrian wears the same clothes, the two sprites' mean colours agree within 12 levels (the legs' stride
    changes how much of the sprite the trousers cover; other clothes move some channel's mean by 30 or more). The
    walkway scene's cart, measured the same way, fails."""
    plans = [_plan(seed, kind) for seed in (0, 1, 2) for kind in M.ANOMALY_KINDS]
    normal = _normal_looks(plans)
    assert len(normal) >= 40
    heights = [n["height"] for n in normal]
    assert 70 <= min(heights) and max(heights) <= 92  # about twice Ped2's people, in pixels
    worn = set().union(*(n["colours"] for n in normal))
    assert worn <= PALETTE and len(worn) >= 6

    def similar(look) -> bool:
        return (_inside(look["height"], heights, 1) and _inside(look["area"], [n["area"] for n in normal])
                and look["colours"] <= worn)

    matched = 0
    for plan in plans:
        labelled = np.flatnonzero(plan.labels)
        look = _looks(plan.anomaly, labelled[len(labelled) // 2])
        assert similar(look), (plan.kind, look)
        twins = [n["mean"] for n in normal if n["clothes"] == look["clothes"]]
        if twins:
            matched += 1
            assert np.abs(np.mean(twins, 0) - look["mean"]).max() < 12, (plan.kind, look, twins)
    assert matched >= 4

    from vadgpu.data import synth as S

    cart = S._anomaly("cart", np.random.default_rng(0), WIDTH, HEIGHT, FRAMES)

    def cart_alone(t):
        scenery = np.broadcast_to(MAGENTA, (HEIGHT, WIDTH, 3)).copy()
        frame = S._render(scenery, VideoPlan([cart], np.zeros(1, np.uint8)), t)
        return np.any(frame != MAGENTA, axis=-1), frame

    assert not similar(_looks(None, int(cart.t0) + 60, cart_alone))


def _head(frame: np.ndarray) -> tuple[float, float]:
    """Centroid x, y of a walker's head as drawn alone (its skin-coloured pixels: the swinging legs do not move
    them), NaN when out of view."""
    ys, xs = np.nonzero(np.all(frame == SKIN, axis=-1))
    return (xs.mean(), ys.mean()) if len(xs) else (np.nan, np.nan)


def _normal_speeds(plan) -> np.ndarray:
    """Median x and |y| velocity of the first normal walkers' heads over 30 frames in full view."""
    speeds = []
    for walker in plan.walkers:
        shown = [t for t in range(FRAMES) if t >= walker.t0 and 10 < M.box(walker, t, HEIGHT)[0]
                 and M.box(walker, t, HEIGHT)[2] < WIDTH - 10]
        if walker is not plan.anomaly and len(shown) > 30:
            velocity = np.diff([_head(_alone(walker, t)[1]) for t in shown[:30]], axis=0)
            speeds.append((np.median(velocity[:, 0]), np.median(np.abs(velocity[:, 1]))))
        if len(speeds) == 5:
            break
    assert len(speeds) >= 3
    return np.array(speeds)


@pytest.mark.parametrize("kind", M.ANOMALY_KINDS)
def test_each_anomaly_moves_as_its_kind_says_and_is_labelled(kind):
    plan = _plan(3, kind)
    walk = _normal_speeds(plan)
    assert (walk[:, 0] > 1.5).all() and (walk[:, 1] < 0.2).all()  # everybody walks left to right along the walkway
    labelled = np.flatnonzero(plan.labels)
    assert labelled[0] > 0 and plan.labels[:labelled[0]].sum() == 0
    views = [_alone(plan.anomaly, t) for t in range(FRAMES)]
    track = np.array([_head(frame) for _, frame in views])
    velocity = np.diff(track, axis=0)  # velocity[t]: from frame t to t + 1
    during = velocity[labelled[:-1]]
    if kind == "running":
        assert np.median(during[:, 0]) > 3 * walk[:, 0].max()
    if kind == "wrong-way":
        assert -1.3 * walk[:, 0].max() < np.median(during[:, 0]) < -0.7 * walk[:, 0].min()
    if kind == "stopping":
        first, last = labelled[0], labelled[-1]
        assert last - first + 1 >= M.STOP_FRACTION * FRAMES
        assert all(np.array_equal(views[t][1], views[first][1]) for t in labelled)  # not a pixel moves, legs too
        assert velocity[first - 3:first, 0].min() > 1.5 and velocity[last:last + 3, 0].min() > 1.5
        assert WIDTH / 3 < track[first, 0] < 2 * WIDTH / 3  # in the middle of the walkway
    if kind == "zigzag":
        assert np.median(during[:, 0]) > 1.5  # with the flow
        vertical = during[:, 1]
        assert np.median(np.abs(vertical)) > 5 * walk[:, 1].max() + 1.0
        assert np.count_nonzero(np.diff(np.sign(vertical[np.abs(vertical) > 0.5])) != 0) >= 6  # swerves both ways
    # Labelled frames are the anomaly's while it is in view: drawn in every one of them; and a runner or a
    # wrong-way walker mostly in view is labelled.
    areas = np.array([mask.sum() for mask, _ in views])
    full = areas[labelled].max()
    assert (areas[labelled] > 0.1 * full).all()
    if kind in ("running", "wrong-way"):
        assert (plan.labels[areas >= 0.5 * full] == 1).all()


@pytest.mark.parametrize("frames", [20, 100])
def test_every_kind_labels_both_classes_in_short_videos(frames):
    for kind in M.ANOMALY_KINDS:
        labels = _plan(5, kind, frames).labels
        assert labels.shape == (frames,) and labels[0] == 0 and 0 < labels.sum() < frames, kind


@pytest.mark.av
def test_cli_scene_motion_defaults_to_640x360(tmp_path):
    result = CliRunner().invoke(cli, ["data", "synth", str(tmp_path / "m"), "--scene", "motion", "--train-videos",
                                      "1", "--test-videos", "1", "--frames", "20"])
    assert result.exit_code == 0, result.output
    assert "motion scene" in result.output and "640x360 (width x height)" in result.output
    assert open_dataset("synthetic", tmp_path / "m", variant="mp4").test[0].labels.sum() > 0
    bad = CliRunner().invoke(cli, ["data", "synth", str(tmp_path / "x"), "--scene", "crowd"])
    assert bad.exit_code == 2 and "'crowd' is not one of 'walkway', 'motion'" in bad.output
    assert SCENES["walkway"].frame_size == (120, 160) and unit(HEIGHT) == 3.0
