"""Training frames (model/train/video.py): the FIRST frame of each ``int(video_fps / fps)`` block,
resized to the pixel budget, cached on disk (PROTOCOL.md section 4)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fakes import write_video

from model.frames import MAX_PIXELS, MIN_PIXELS, preprocess_frame, resize_to_budget
from model.train import video as V
from model.train.video import FrameCache, VideoError


@pytest.fixture(scope="module")
def processor(tiny_loaded):
    return tiny_loaded.processor


def ideal_frame(i: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """What ``fakes.write_video`` writes as frame i (before mp4v's losses)."""
    w, h = size
    img = np.full((h, w, 3), (7 * i) % 256, np.uint8)
    img[:, i % w] = 255
    return img


def profile(frame: np.ndarray) -> np.ndarray:
    """Column means: the grey level and the white bar's position survive mp4v and resizing."""
    return np.asarray(frame, np.float64).mean(axis=(0, 2))


def identify(frame: np.ndarray, candidates: list[np.ndarray]) -> tuple[int, float, float]:
    """(index of the nearest candidate, its distance, the runner-up's distance); the distance is
    the largest difference between column means, so a misplaced bar counts fully."""
    errors = [float(np.abs(profile(frame) - profile(c)).max()) for c in candidates]
    order = np.argsort(errors)
    return int(order[0]), errors[order[0]], errors[order[1]]


def decode_all_bgr(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    return frames


@pytest.mark.parametrize(
    "n_frames, video_fps, fps, size, block",
    [
        (25, 10, 1.0, (64, 48), 10),  # 0, 10, 20 (a partial last block of 5)
        (11, 2.5, 1.0, (64, 48), 2),  # 0, 2, ..., 10: int(2.5) = 2, the last block holds one frame
        (100, 29.97, 1.0, (64, 48), 29),  # 0, 29, 58, 87: drifts against the clock, as released
        (25, 10, 2.0, (200, 120), 5),  # 2 fps: 0, 5, 10, 15, 20; a frame size inside the budget
    ],
)
def test_first_frame_of_each_block(tmp_path, processor, n_frames, video_fps, fps, size, block):
    path = write_video(tmp_path / "v.mp4", n_frames, video_fps, size=size)
    assert V.block_size(video_fps, fps) == block
    sampled = FrameCache(tmp_path / "cache", processor, fps=fps).get(path)

    expected = list(range(0, n_frames, block))  # every block, the partial last one included
    assert len(sampled.frames) == len(expected) == -(-n_frames // block)
    assert sampled.source_frames == n_frames and sampled.video_fps == pytest.approx(video_fps, abs=0.01)

    candidates = [resize_to_budget(processor, ideal_frame(i, size)) for i in range(n_frames)]
    h, w = candidates[0].shape[:2]
    assert sampled.frames.shape == (len(expected), h, w, 3) and sampled.frames.dtype == np.uint8
    assert h % 28 == 0 and w % 28 == 0 and MIN_PIXELS <= h * w <= MAX_PIXELS
    if size == (64, 48):
        assert (h, w) == (56, 56)  # 3072 pixels is under the budget: scaled up to 56x56
    else:
        assert (h, w) == (112, 196)
    for j, source in enumerate(expected):
        found, err, runner_up = identify(np.asarray(sampled.frames[j]), candidates)
        assert found == source, f"sampled frame {j} looks like source frame {found}, not {source}"
        assert err < 12 and runner_up > 25  # lossy mp4v, but far from every other frame


def write_colour_video(path: Path, n_frames: int, fps: float, size=(80, 60)) -> Path:
    """Frames with distinct R, G and B so a channel swap shows (write_video's are grey)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for i in range(n_frames):
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[:, : w // 2, 0] = 220  # red left half
        rgb[:, w // 2 :, 2] = 200  # blue right half
        rgb[: h // 3, :, 1] = (40 * i) % 256  # green band changing per frame
        writer.write(rgb[:, :, ::-1].copy())  # OpenCV writes BGR
    writer.release()
    return path


def test_cached_frame_gives_exactly_the_original_pixel_values(tmp_path, processor):
    path = write_colour_video(tmp_path / "c.mp4", 9, 4)  # block 4: source frames 0, 4, 8
    cached = FrameCache(tmp_path / "cache", processor).get(path)
    raw = decode_all_bgr(path)
    assert len(cached.frames) == 3
    for j, source in enumerate((0, 4, 8)):
        reference = preprocess_frame(processor, raw[source], channel_order="bgr")
        again = preprocess_frame(processor, np.array(cached.frames[j]))
        assert torch.equal(again.pixel_values, reference.pixel_values)
        assert torch.equal(again.image_grid_thw, reference.image_grid_thw)
        assert again.n_tokens == reference.n_tokens
    # The cached frame is RGB: its left half is red, not blue.
    left = np.asarray(cached.frames[0])[:, :20].reshape(-1, 3).mean(0)
    assert left[0] > 150 and left[2] < 60


def cache_entries(root: Path) -> list[Path]:
    return sorted(root.glob("*.npy"))


def test_warm_cache_decodes_nothing(tmp_path, processor):
    path = write_video(tmp_path / "v.mp4", 25, 10)
    first = FrameCache(tmp_path / "cache", processor)
    a = first.get(path)
    assert first.decoded == 1 and len(cache_entries(tmp_path / "cache")) == 1
    assert first.get(path) is a and first.decoded == 1  # the same instance remembers it

    second = FrameCache(tmp_path / "cache", processor)
    b = second.get(str(path))
    assert second.decoded == 0
    assert np.array_equal(np.asarray(a.frames), np.asarray(b.frames))
    assert (b.video_fps, b.source_frames) == (a.video_fps, a.source_frames)
    assert not list((tmp_path / "cache").glob("*.part"))  # nothing half-written left behind


def test_other_settings_make_new_entries(tmp_path, processor):
    path = write_video(tmp_path / "v.mp4", 25, 10)
    root = tmp_path / "cache"
    base = FrameCache(root, processor).get(path)

    bigger = FrameCache(root, processor, min_pixels=28 * 28 * 12)
    big = bigger.get(path)
    assert bigger.decoded == 1 and len(cache_entries(root)) == 2
    assert big.frames.shape[0] == base.frames.shape[0] and big.frames.shape[1:3] != base.frames.shape[1:3]
    assert big.frames.shape[1] * big.frames.shape[2] >= 28 * 28 * 12

    faster = FrameCache(root, processor, fps=2)
    fast = faster.get(path)
    assert faster.decoded == 1 and len(cache_entries(root)) == 3
    assert len(fast.frames) == 5 and len(base.frames) == 3

    warm = FrameCache(root, processor)
    assert np.array_equal(np.asarray(warm.get(path).frames), np.asarray(base.frames)) and warm.decoded == 0


def test_rewritten_file_is_decoded_again(tmp_path, processor):
    path = write_video(tmp_path / "v.mp4", 25, 10)
    cache = FrameCache(tmp_path / "cache", processor)
    assert len(cache.get(path).frames) == 3
    write_video(path, 45, 10)  # new size and mtime
    again = cache.get(path)
    assert cache.decoded == 2 and len(again.frames) == 5 and again.source_frames == 45
    fresh = FrameCache(tmp_path / "cache", processor)
    assert len(fresh.get(path).frames) == 5 and fresh.decoded == 0


@pytest.mark.parametrize(
    "damage",
    ["garbage npy", "truncated npy", "garbage json", "wrong frame count"],
)
def test_damaged_entry_is_decoded_again(tmp_path, processor, damage):
    path = write_video(tmp_path / "v.mp4", 25, 10)
    root = tmp_path / "cache"
    good = np.array(FrameCache(root, processor).get(path).frames)
    (npy,) = cache_entries(root)
    meta = npy.with_suffix(".json")
    if damage == "garbage npy":
        npy.write_bytes(b"\x00\x01not numpy at all" * 50)
    elif damage == "truncated npy":
        data = npy.read_bytes()
        npy.write_bytes(data[: len(data) // 2])
    elif damage == "garbage json":
        meta.write_text("{not json")
    else:
        info = json.loads(meta.read_text())
        meta.write_text(json.dumps({**info, "frames": info["frames"] + 1}))

    cache = FrameCache(root, processor)
    got = cache.get(path)
    assert cache.decoded == 1
    assert np.array_equal(np.asarray(got.frames), good)
    # The entry was written again and is good now.
    warm = FrameCache(root, processor)
    assert np.array_equal(np.asarray(warm.get(path).frames), good) and warm.decoded == 0


def test_unwritable_cache_still_returns_frames(tmp_path, processor, monkeypatch, caplog):
    path = write_video(tmp_path / "v.mp4", 25, 10)
    reference = np.array(FrameCache(tmp_path / "ref", processor).get(path).frames)
    root = tmp_path / "cache"

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    cache = FrameCache(root, processor)
    got = cache.get(path)
    assert cache.decoded == 1
    assert np.array_equal(np.asarray(got.frames), reference)
    assert list(root.iterdir()) == []  # no entry and no temporary file left
    assert "could not write the frame cache" in caplog.text
    assert cache.get(path) is got and cache.decoded == 1  # kept in memory for this run
    monkeypatch.undo()
    again = FrameCache(root, processor)
    again.get(path)
    assert again.decoded == 1 and len(cache_entries(root)) == 1


def test_cache_folder_that_cannot_be_created_still_returns_frames(tmp_path, processor, monkeypatch):
    path = write_video(tmp_path / "v.mp4", 25, 10)
    root = tmp_path / "readonly" / "cache"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == root or root in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    cache = FrameCache(root, processor)
    assert len(cache.get(path).frames) == 3


def test_unusable_files_raise_video_error_naming_them(tmp_path, processor):
    cache = FrameCache(tmp_path / "cache", processor)
    missing = tmp_path / "missing.mp4"
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (missing, noise, empty):
        with pytest.raises(VideoError) as info:
            cache.get(path)
        assert str(path) in str(info.value)
    with pytest.raises(VideoError, match="missing.mp4"):
        V.decode_sampled(missing, 1.0)
    assert cache.decoded == 0 and cache_entries(tmp_path / "cache") == []
