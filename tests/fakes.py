"""Hardware stand-ins shared by the test folders (imported as ``fakes``: pytest puts tests/ on
sys.path for its conftest)."""

import threading
import time


class DeadCamera:
    """What cv2.VideoCapture(i) gives for an absent camera."""

    def __init__(self, index: int) -> None:
        self.index = index

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return False

    def read(self):
        return False, None

    def set(self, prop: int, value: float) -> bool:
        return False

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


def write_video(path, n_frames: int, fps: float, size: tuple[int, int] = (64, 48)):
    """A small mp4 standing in for a camera or a user's clip. Frame i is a flat grey of level
    7*i (mod 256) with a white bar at column i, so consecutive frames differ."""
    import cv2
    import numpy as np

    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for i in range(n_frames):
        img = np.full((h, w, 3), (7 * i) % 256, np.uint8)
        img[:, i % w] = 255
        writer.write(img)
    writer.release()
    return path


class FileCamera:
    """cv2.VideoCapture look-alike over a video file: a live camera for WebcamSource's
    ``capture_factory``. ``pace`` seconds per read (0 = as fast as the decoder goes), optionally
    looping like an endless camera; ``settings`` records what the source asked for (resolution)."""

    def __init__(self, path, pace: float = 0.0, loop: bool = False) -> None:
        import cv2

        self.path, self.pace, self.loop = path, pace, loop
        self.cap = cv2.VideoCapture(str(path))
        self.reads = 0
        self.settings: dict[int, float] = {}
        self.released = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.cap.isOpened()

    def read(self):
        import cv2

        if self.pace:
            time.sleep(self.pace)
        ok, img = self.cap.read()
        if not ok and self.loop:
            self.cap.release()
            self.cap = cv2.VideoCapture(str(self.path))
            ok, img = self.cap.read()
        if ok:
            self.reads += 1
        return ok, img

    def set(self, prop: int, value: float) -> bool:
        self.settings[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.cap.get(prop)

    def release(self) -> None:
        self.cap.release()
        self.released.set()


def decode_all_rgb(path) -> list:
    """Reference decode of a video with plain OpenCV, as RGB arrays: the sources use the same
    decoder, so their sampled frames must match these exactly."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return out


def wait_until(predicate, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class FakeEngine:
    """A stand-in for ``model.engine.StreamEngine`` that implements the same ``Engine`` protocol
    (``model/engine_types.py``; tests/model/test_engine_types.py keeps the two in step): each step
    answers from ``script`` (a state per step, cycled; RESPONSE steps answer ``"answer at T"`` token
    by token; ``force`` overrides it), questions enter the first turn that covers their time, one per
    turn, and ``fail_at`` (a step number, 1-based) raises ``error`` there. Imports no torch."""

    def __init__(self, script=("</Silence>",), fps: float = 1.0, fail_at=None, error=None) -> None:
        from model.engine_types import EngineOptions

        self.script, self.fail_at, self.error = list(script), fail_at, error
        self.opts = EngineOptions(fps=fps)
        self.kernel_path = "fake"
        self.calls = 0
        self.steps = 0
        self.resets = 0
        self._pending = []  # (text, t, tag)
        self._turns = []  # (t, end, question, state, text): what messages() renders

    def ask(self, question, t=None, tag=None):
        from model.protocol import neutralize_user_text

        text = neutralize_user_text(question)
        if not text:
            raise ValueError("an empty question cannot be asked")
        self._pending.append((text, t, tag))
        return text

    def update(self, options):
        later = ["fps"] if options.fps != self.opts.fps else []
        self.opts = options
        return later

    def set_options(self, **changes):
        from dataclasses import replace

        return self.update(replace(self.opts, **changes))

    def reset(self):
        self.resets += 1
        self.steps = 0
        self._turns = []

    def messages(self):
        from model.protocol import SYSTEM_PROMPT, assistant_turn_content, user_turn_content

        out = [{"role": "system", "content": SYSTEM_PROMPT}]
        for t, end, question, state, text in self._turns:
            out.append({"role": "user", "content": user_turn_content(t, end, question)})
            out.append({"role": "assistant", "content": assistant_turn_content(state, text)})
        return out

    def snapshot(self):
        from dataclasses import replace

        return (self.steps, list(self._pending), list(self._turns), replace(self.opts))

    def restore(self, snap):
        from dataclasses import replace

        steps, pending, turns, opts = snap
        self.steps, self._pending, self._turns, self.opts = steps, list(pending), list(turns), replace(opts)

    def step(self, frame, t=None, on_token=None, force=None):
        from model.engine_types import StepResult
        from model.protocol import RESPONSE, STATE_TOKENS

        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise self.error
        end = t + 1.0 / self.opts.fps
        due = [q for q in self._pending if q[1] is None or q[1] < end]
        question = due[0] if due else None
        if question is not None:
            self._pending.remove(question)
        state = force or self.script[self.steps % len(self.script)]
        text = ""
        if state == RESPONSE:
            for piece in ("answer", " at", f" {t:g}"):
                text += piece
                if on_token is not None:
                    on_token(piece)
        self.steps += 1
        self._turns.append((t, end, question[0] if question else None, state, text))
        probs = {s: (0.8 if s == state else 0.1) for s in STATE_TOKENS}
        return StepResult(
            t=t, end=end, state=state, probs=probs, text=text,
            question=question[0] if question else None,
            timings={"vision": 1.0, "prefill": 2.0, "decision": 0.5, "decode": 0.0, "rebuild": 0.0, "total": 3.5},
            context_turns=self.steps, context_tokens=100 * self.steps, rebuilt=False, n_answer_tokens=3 if text else 0,
            question_tag=question[2] if question else None,
        )  # fmt: skip


def read_until(stream, predicate, timeout: float = 120.0) -> list[str]:
    """Lines of a subprocess's text ``stream`` until one satisfies ``predicate`` (awaited with
    select, not polled); raises AssertionError after ``timeout`` seconds."""
    import selectors

    lines: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no matching line within {timeout} s; got {lines[-5:]}")
            line = stream.readline()
            if not line:
                raise AssertionError(f"the stream ended before a matching line; got {lines[-5:]}")
            lines.append(line)
            if predicate(line):
                return lines


# A session file as the app's first session log wrote it (schema 1: "version", "p", latency as a
# number, the question as text): such files must still open.
SCHEMA_1_SESSION = [  # what the app's first session log wrote: "version", "p", latency as a number, question as text
    {"type": "session", "format": "streamo-live-session", "version": 1, "id": "abc123", "started": 1700000000.0,
     "source": "/videos/old.mp4", "model": "demo", "task": "narrate", "fps": 1.0},
    {"type": "step", "t": 0.0, "end": 1.0, "state": "</Silence>", "wall": 1700000001.0, "question": "Where is the cat?",
     "p": {"</Silence>": 0.9, "</Standby>": 0.05, "</Response>": 0.05}, "latency_ms": 120.5},
    {"type": "step", "t": 1.0, "end": 2.0, "state": "</Response>", "wall": 1700000002.0, "text": "On the sofa.",
     "p": {"</Silence>": 0.1, "</Standby>": 0.1, "</Response>": 0.8}, "latency_ms": 300.0},
    {"type": "end", "wall": 1700000003.0},
]  # fmt: skip


class FakeCallbackFlags:
    """The part of ``sounddevice.CallbackFlags`` a stream callback reads."""

    def __init__(self, input_overflow: bool = False) -> None:
        self.input_overflow = input_overflow

    def __bool__(self) -> bool:
        return self.input_overflow


class FakePortAudioError(Exception):
    """Stands in for ``sounddevice.PortAudioError``."""


class FakeInputStream:
    """``sounddevice.InputStream`` look-alike made by :class:`FakeSoundDevice`: ``start()`` spawns a thread
    ("fake-audio") that calls the given callback with ``(indata, frames, time, status)`` for each block of
    ``blocksize`` frames of the device's samples, at real time divided by ``speed`` (``speed=0``: as fast as
    possible). ``indata`` is one reused (frames, channels) buffer, as PortAudio's is, so a callback that keeps
    a reference instead of copying sees its audio overwritten. When the samples run out, or ``unplug_after``
    blocks were delivered, the stream goes inactive and calls ``finished_callback``, as PortAudio does when a
    device disappears."""

    def __init__(self, device: "FakeSoundDevice", samplerate=None, blocksize=None, device_index=None, channels=1,
                 dtype="float32", callback=None, finished_callback=None, **_ignored) -> None:  # fmt: skip
        import numpy as np

        self.sd = device
        self.samplerate = float(samplerate or device.rate)
        self.blocksize = int(blocksize or 512)
        self.device = device_index
        self.channels = int(channels or 1)
        self.dtype = dtype
        self.callback, self.finished_callback = callback, finished_callback
        samples = np.asarray(device.samples, dtype=np.float32)
        if int(self.samplerate) != device.rate and len(samples):
            # The fake device "records" at whatever rate it was opened with (linear interpolation is enough here).
            n = int(round(len(samples) * self.samplerate / device.rate))
            samples = np.interp(np.arange(n) * device.rate / self.samplerate, np.arange(len(samples)), samples)
        self.samples = samples.astype(np.float32)
        self.active = False
        self.closed = False
        self.blocks = 0
        self.done = threading.Event()  # the samples ran out or the device was "unplugged"
        self.unplugged = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.closed:
            raise FakePortAudioError("Stream is closed")
        if self.active:
            return
        self.active = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._feed, name="fake-audio", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        import numpy as np

        buf = np.zeros((self.blocksize, self.channels), dtype=np.float32)
        t0 = time.monotonic()
        pos = 0
        while not self._stop.is_set():
            if self.sd.unplug_after is not None and self.blocks >= self.sd.unplug_after:
                self.unplugged.set()
                break
            block = self.samples[pos : pos + self.blocksize]
            if len(block) < self.blocksize:  # PortAudio delivers whole blocks only
                break
            buf[:, :] = block[:, None]
            flags = FakeCallbackFlags(input_overflow=self.blocks in self.sd.overflow_blocks)
            self.callback(buf, self.blocksize, None, flags)
            self.blocks += 1
            pos += self.blocksize
            if self.sd.speed:
                delay = t0 + pos / (self.samplerate * self.sd.speed) - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
        self.active = False
        self.done.set()
        if self.finished_callback is not None:
            self.finished_callback()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        self.active = False

    def close(self) -> None:
        self.stop()
        self.closed = True

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FakeSoundDevice:
    """A stand-in for the ``sounddevice`` module with one or more input devices whose "microphone" plays
    ``samples`` (float32 mono at ``rate``) through the real stream callback (see :class:`FakeInputStream`).

    ``devices``: the ``query_devices()`` list (default: one input named ``name`` at ``rate``; ``[]``: no
    devices). ``default``: the default input's index (-1: none). ``accept_rates``: the only sample rates the
    device opens at (others raise ``PortAudioError`` from ``check_input_settings`` and ``InputStream``);
    None accepts any. ``unplug_after``: the stream dies after that many blocks. ``overflow_blocks``: block
    numbers (0-based) whose callback carries the input-overflow flag. ``streams`` keeps every stream opened."""

    PortAudioError = FakePortAudioError
    CallbackFlags = FakeCallbackFlags

    def __init__(self, samples=(), rate: int = 16000, devices=None, default: int = 0, name: str = "Fake USB Mic",
                 accept_rates=None, speed: float = 0.0, unplug_after=None, overflow_blocks=()) -> None:  # fmt: skip
        from types import SimpleNamespace

        self.samples, self.rate = samples, int(rate)
        if devices is None:
            devices = [{"name": name, "index": 0, "hostapi": 0, "max_input_channels": 1, "max_output_channels": 0,
                        "default_samplerate": float(rate)}]  # fmt: skip
        self.devices = devices
        self.default = SimpleNamespace(device=[default, -1], samplerate=None)
        self.accept_rates = None if accept_rates is None else {int(r) for r in accept_rates}
        self.speed = speed
        self.unplug_after = unplug_after
        self.overflow_blocks = set(overflow_blocks)
        self.streams: list[FakeInputStream] = []
        self.refused: list[float] = []  # sample rates asked for and refused

    def query_devices(self, device=None, kind=None):
        if device is not None:
            return self.devices[device]
        if kind == "input":
            if not (0 <= self.default.device[0] < len(self.devices)):
                raise FakePortAudioError(f"Error querying device {self.default.device[0]}")
            return self.devices[self.default.device[0]]
        return list(self.devices)

    def query_hostapis(self, index=None):
        apis = [{"name": "Fake Audio"}]
        return apis if index is None else apis[index]

    def _check(self, device, samplerate) -> None:
        if device is not None and not any(d.get("index", i) == device for i, d in enumerate(self.devices)):
            raise FakePortAudioError(f"Error querying device {device}")
        if self.accept_rates is not None and int(samplerate) not in self.accept_rates:
            self.refused.append(samplerate)
            raise FakePortAudioError("Invalid sample rate [PaErrorCode -9997]")

    def check_input_settings(self, device=None, channels=None, dtype=None, extra_settings=None, samplerate=None):
        self._check(device, samplerate or self.rate)

    def InputStream(self, samplerate=None, blocksize=None, device=None, **kwargs):  # noqa: N802 - sounddevice's name
        self._check(device, samplerate or self.rate)
        stream = FakeInputStream(self, samplerate=samplerate, blocksize=blocksize, device_index=device, **kwargs)
        self.streams.append(stream)
        return stream


class FakeTrainingProcess:
    """What ``model.train.worker.start_training`` returns as its process, without a process."""

    pid = 4242

    def __init__(self) -> None:
        self.alive, self.exitcode = True, None

    def is_alive(self) -> bool:
        return self.alive

    def join(self, timeout=None) -> None:  # noqa: ANN001
        pass

    def kill(self) -> None:
        self.alive, self.exitcode = False, -9

    terminate = kill


def scripted_training(events: list[dict], process: FakeTrainingProcess):
    """A ``start_training`` stand-in whose child has already sent ``events``."""
    import queue

    def start(config):  # noqa: ANN001
        q: queue.Queue = queue.Queue()
        for e in events:
            q.put(e)
        return process, q, type("Stop", (), {"set": lambda self: None})()

    return start
