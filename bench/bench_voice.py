"""Voice latency through the real callback path: a question (espeak-ng) is played in real time into the
real ``Microphone``'s PortAudio callback (only the ``sounddevice`` module is a stand-in), then Silero VAD,
``VoiceInput`` and the recogniser run as in the app.

    .venv/bin/python -m bench.bench_voice                 # the demo Whisper on the CPU; Whisper base/small on a GPU
    .venv/bin/python -m bench.bench_voice --trials 10
    .venv/bin/python -m bench.bench_voice --vad-rtf       # the VAD's real-time factor, idle and with torch busy

Two figures, each for the first utterance after listening is armed (a fresh recogniser, and the process's
first Silero; the question starts 0.3 s after the microphone opens) and warm:
- barge-in: the Speaker speaks a long answer into a stand-in output stream (blocking writes at real time);
  from the question's speech onset in the microphone's playback to the last block the Speaker wrote.
  Headphones mode (``headphones=True``), so the figure does not depend on echo cancellation.
- end of speech -> question entered: from the end of the question's speech in the playback to the moment
  ``VoiceInput`` handed the question on (the VAD's hangover plus whatever recognition is not hidden in it).
Goals: barge-in under 300 ms warm; the first utterance no slower than a warm one; end of speech -> question
under 600 ms with the demo recogniser. Whisper base/small rows need a GPU and the models in the Hugging Face
cache (nothing is downloaded with HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import warnings

import numpy as np


def _busy_torch(stop: threading.Event) -> None:
    """The video engine's stand-in: matmuls on torch's process-wide thread pool (all its threads), until stopped."""
    import torch

    a = torch.randn(2048, 2048)
    while not stop.is_set():
        a = torch.tanh(a @ a)


def _rtf(probability, audio: np.ndarray, reset) -> float:
    """Seconds of compute per second of 16 kHz ``audio``, one 512-sample window at a time (as the segmenter runs)."""
    reset()
    t0 = time.perf_counter()
    for i in range(0, len(audio) - 511, 512):
        probability(audio[i : i + 512])
    return (time.perf_counter() - t0) / (len(audio) / 16000)


def vad_rtf(seconds: float = 60.0, torch_seconds: float = 15.0) -> int:
    """Print the VAD's real-time factor (compute time / audio time; under 1 keeps up with a microphone), idle and
    with torch busy on its own threads, for the app's Silero on onnxruntime (one thread of its own) and, as the
    reference, the TorchScript Silero on torch's thread pool (what the app ran before; on ``torch_seconds``)."""
    import torch

    from app.voice.vad import SileroVad, _model_path

    rng = np.random.default_rng(0)
    # Noise under a 3 Hz syllable-like envelope: the network's cost does not depend on what it hears.
    t = np.arange(int(seconds * 16000)) / 16000
    audio = (rng.standard_normal(len(t)) * 0.1 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    onnx = SileroVad().warm_up()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jit = torch.jit.load(str(_model_path().with_name("silero_vad.jit")))

    def jit_probability(x: np.ndarray) -> float:
        with torch.no_grad():
            return float(jit(torch.from_numpy(x.copy())[None], 16000).item())

    short = audio[: int(torch_seconds * 16000)]
    runs = [
        ("silero onnxruntime, 1 thread (app)", onnx.probability, onnx.reset, audio),
        (f"silero torchscript, {torch.get_num_threads()} torch threads", jit_probability, jit.reset_states, short),
    ]
    print(f"VAD real-time factor on {seconds:.0f} s of 16 kHz audio ({torch_seconds:.0f} s for torchscript); "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'runtime':44} {'idle':>8} {'torch busy':>11}")
    for name, probability, reset, x in runs:
        idle = _rtf(probability, x, reset)
        stop = threading.Event()
        load = threading.Thread(target=_busy_torch, args=(stop,), daemon=True)
        load.start()
        time.sleep(0.5)  # the load is running before the clock starts
        try:
            busy = _rtf(probability, x, reset)
        finally:
            stop.set()
            load.join()
        print(f"{name:44} {idle:8.3f} {busy:11.3f}")
    print("real-time factor = compute seconds per audio second; above 1 the VAD falls behind the microphone")
    return 0


class _InputStream:
    """``sounddevice.InputStream`` look-alike: a thread calls the callback with ``audio`` in blocks, at real time."""

    def __init__(self, sd: BenchSoundDevice, samplerate=16000, blocksize=320, callback=None, finished_callback=None,
                 **_: object) -> None:  # fmt: skip
        self.sd, self.rate, self.block = sd, int(samplerate), int(blocksize)
        self.callback, self.finished_callback = callback, finished_callback
        self.active = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.active = True
        self._thread = threading.Thread(target=self._feed, name="bench-mic", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        audio, buf = self.sd.audio, np.zeros((self.block, 1), np.float32)
        t0 = self.sd.mic_started = time.perf_counter()  # sample 0 of the playback is "now"
        pos = 0
        while not self._stop.is_set() and pos + self.block <= len(audio):
            # A block reaches the callback once it has been recorded: at its last sample's time.
            self._stop.wait(max(0.0, t0 + (pos + self.block) / self.rate - time.perf_counter()))
            buf[:, 0] = audio[pos : pos + self.block]
            self.callback(buf, self.block, None, None)
            pos += self.block
        self.active = False
        if self.finished_callback is not None:
            self.finished_callback()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.active = False

    def close(self) -> None:
        self.stop()


class _OutputStream:
    """``sounddevice.OutputStream`` look-alike in blocking-write mode: ``write`` returns once the device buffer
    (two blocks) has room, as a real stream does; the time of each write is kept."""

    def __init__(self, sd: BenchSoundDevice, samplerate=22050, blocksize=441, **_: object) -> None:
        self.sd, self.rate = sd, int(samplerate)
        self.buffer_s = 2 * int(blocksize) / self.rate
        self.played_until = 0.0

    def start(self) -> None:
        self.played_until = time.perf_counter()

    def write(self, data: np.ndarray) -> bool:
        now = time.perf_counter()
        self.sd.writes.append(now)
        self.played_until = max(self.played_until, now) + len(data) / self.rate
        time.sleep(max(0.0, self.played_until - self.buffer_s - time.perf_counter()))
        return False

    def stop(self) -> None:
        pass

    abort = close = stop


class BenchSoundDevice:
    """The part of ``sounddevice`` the Microphone and the Speaker use: one input playing ``audio`` (16 kHz) in
    real time through the callback, one output that plays at real time and records when it was written to."""

    PortAudioError = RuntimeError

    def __init__(self) -> None:
        self.audio = np.zeros(0, np.float32)
        self.mic_started = 0.0
        self.writes: list[float] = []
        self.devices = [
            {"name": "bench mic", "index": 0, "hostapi": 0, "max_input_channels": 1, "max_output_channels": 0,
             "default_samplerate": 16000.0},
            {"name": "bench speakers", "index": 1, "hostapi": 0, "max_input_channels": 0, "max_output_channels": 1,
             "default_samplerate": 22050.0},
        ]  # fmt: skip
        self.default = type("Default", (), {"device": [0, 1], "samplerate": None})()

    def query_devices(self, device=None, kind=None):  # noqa: ANN001
        if device is not None:
            return self.devices[device]
        if kind is not None:
            return self.devices[0 if kind == "input" else 1]
        return list(self.devices)

    def query_hostapis(self, index=None):  # noqa: ANN001
        return [{"name": "bench"}] if index is None else {"name": "bench"}

    def check_input_settings(self, **_: object) -> None:
        pass

    def InputStream(self, **kwargs) -> _InputStream:  # noqa: N802 - sounddevice's name
        return _InputStream(self, **kwargs)

    def OutputStream(self, **kwargs) -> _OutputStream:  # noqa: N802
        return _OutputStream(self, **kwargs)


ANSWER = " ".join(["The person walks to the table, picks up a red cup and puts it down again."] * 6)


def _trial(recognizer, sd: BenchSoundDevice, audio: np.ndarray, speaker=None, timeout: float = 60.0):
    """Listen to one playback of ``audio``: (the microphone's start on perf_counter, the Heard, or None)."""
    from app.voice.audio import Microphone
    from app.voice.input import VoiceInput

    sd.audio = audio
    done, heard = threading.Event(), []
    voice = VoiceInput(
        recognizer, lambda q: None, Microphone(sd=sd), speaker=speaker, headphones=True,
        on_heard=lambda h: (heard.append(h), done.set()),
    )  # fmt: skip
    voice.start()  # warms up the recogniser and Silero, then opens the microphone
    done.wait(len(audio) / 16000 + timeout)
    voice.stop()
    return sd.mic_started, (heard[0] if heard else None)


def measure_barge_in(make_recognizer, question: np.ndarray, trials: int) -> tuple[float | None, list[float]]:
    """Speech onset in the playback -> the last block the Speaker wrote (seconds): first, then warm trials."""
    from app.voice.tts import Speaker

    sd = BenchSoundDevice()
    speaker = Speaker(sd=sd)
    recognizer = make_recognizer()
    first, warm = None, []
    try:
        for k in range(trials + 1):
            lead = 0.3 if k == 0 else 1.0
            audio = np.concatenate([_quiet(lead), question, _quiet(1.5)])
            sd.writes.clear()
            speaker.say(ANSWER)
            deadline = time.perf_counter() + 30
            while not speaker.speaking and time.perf_counter() < deadline:
                time.sleep(0.01)
            started, _ = _trial(recognizer, sd, audio, speaker=speaker)
            onset = started + lead
            after = [t for t in sd.writes if t >= onset]
            if not speaker.speaking and after:
                lat = after[-1] - onset
                first, warm = (lat, warm) if k == 0 else (first, [*warm, lat])
            speaker.stop()
            speaker.wait(5)
    finally:
        speaker.close()
    return first, warm


def measure_end_to_question(make_recognizer, question: np.ndarray, trials: int) -> tuple[float | None, list[float]]:
    """End of speech in the playback -> question handed on (seconds): first (a fresh recogniser), then warm."""
    sd = BenchSoundDevice()
    recognizer = make_recognizer()
    first, warm = None, []
    for k in range(trials + 1):
        lead = 0.3 if k == 0 else 1.0
        audio = np.concatenate([_quiet(lead), question, _quiet(2.0)])
        started, heard = _trial(recognizer, sd, audio)
        if heard is not None:
            lat = heard.entered_wall - (started + lead + len(question) / 16000)
            first, warm = (lat, warm) if k == 0 else (first, [*warm, lat])
    return first, warm


def _quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), np.float32)


def _question() -> np.ndarray:
    """The spoken question at 16 kHz, trimmed to where its sound is (its end is the end of speech), over
    -60 dBFS noise (a quiet room), as the playback holds it."""
    from app.voice.audio import level_dbfs, resample
    from app.voice.tts import synthesize

    speech, rate = synthesize("What is the person holding in their left hand?")
    x = resample(speech, rate, 16000)
    loud = [i for i in range(0, len(x) - 160, 160) if level_dbfs(x[i : i + 160]) > -40.0]
    return x[loud[0] : loud[-1] + 160].astype(np.float32)


def _row(name: str, device: str, first: float | None, warm: list[float]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{1000 * v:.0f}"

    med = statistics.median(warm) if warm else None
    worst = max(warm) if warm else None
    return f"{name:34} {device:6} {ms(first):>9} {ms(med):>11} {ms(worst):>9} {len(warm):>6}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_voice", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--vad-rtf", action="store_true", help="print the VAD's real-time factor, idle and under load")
    args = ap.parse_args(argv)
    if args.vad_rtf:
        return vad_rtf()

    import torch

    from app.voice.asr import Recognizer

    noise = np.random.default_rng(0)
    question = _question()
    question = question + noise.standard_normal(len(question)).astype(np.float32) * 0.001
    runs = [("demo", "cpu")]
    if torch.cuda.is_available():
        runs += [("openai/whisper-base", "cuda"), ("openai/whisper-small", "cuda")]
    else:
        print("CUDA: no GPU (Whisper base/small fp16 latencies need one)")
    print(f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}; "
          f"question {len(question) / 16000:.2f} s, {args.trials} warm trials")  # fmt: skip
    head = f"{'figure':34} {'device':6} {'first ms':>9} {'warm median':>11} {'warm max':>9} {'trials':>6}"
    print(head)
    for model, device in runs:

        def make(model=model, device=device) -> Recognizer:
            return Recognizer(model, device=device, language="en")

        try:
            make().load()
        except Exception as e:  # noqa: BLE001 - a model not in the cache: say so, go on
            print(f"{model:34} {device:6} not available: {str(e).splitlines()[0][:120]}")
            continue
        first, warm = measure_barge_in(make, question, args.trials)
        print(_row(f"barge-in ({model}, headphones)", device, first, warm))
        first, warm = measure_end_to_question(make, question, args.trials)
        print(_row(f"end of speech -> question ({model})", device, first, warm))
    print("barge-in = question onset in the microphone's playback -> the Speaker's last block written; goal < 300 ms")
    print("end of speech -> question = VAD hangover (500 ms) + recognition not hidden in it; goal < 600 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
