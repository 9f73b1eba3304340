"""Voice latency through the real callback path: a question (espeak-ng) is played in real time into the
real ``Microphone``'s PortAudio callback (only the ``sounddevice`` module is a stand-in), then Silero VAD,
``VoiceInput`` and the recogniser run as in the app.

    .venv/bin/python -m bench.bench_voice                 # the demo Whisper on the CPU; Whisper base/small on a GPU
    .venv/bin/python -m bench.bench_voice --trials 10
    .venv/bin/python -m bench.bench_voice --vad-rtf       # the VAD's real-time factor, idle and with torch busy
    .venv/bin/python -m bench.bench_voice --pauses [--noise-dbfs -60]  # the segmenter alone: when it ends, pauses

Two figures, each for the first utterance after listening is armed (a fresh recogniser, and the process's
first Silero; the question starts 0.3 s after the microphone opens) and warm:
- barge-in: the Speaker speaks a long answer into a stand-in output stream (blocking writes at real time);
  from the question's speech onset in the microphone's playback to the end of the answer's sound (its last
  block played, or the moment the device dropped what it still held). Twice: with headphones
  (``headphones=True``), and without them, a simulated room carrying what the stream plays back into the
  microphone (50 ms later, x0.5, low-passed) and the echo canceller taking it out, the question 10 dB under
  the echo (it starts 6 s into the answer: the canceller has learnt the room and settled).
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


def pauses(noise_dbfs: float = -60.0, block: int = 320) -> int:
    """Print how the app's ``Segmenter`` (with Silero) ends the question and bridges a pause, fed 20 ms blocks
    as fast as it takes them, over ``noise_dbfs`` white noise: the end of the sound -> the block that ended the
    utterance, over 9 alignments of the end in the VAD's windows; and, at each gap between words past
    ``fragment_s`` (where the short hangover applies), the longest pause (the gap's own quiet taken out, 10 ms
    steps, 4 alignments) that stays one question."""
    from app.voice.audio import level_dbfs
    from app.voice.vad import Segmenter, SileroVad, VadSettings

    settings, vad, rng = VadSettings(), SileroVad(), np.random.default_rng(0)
    q = _question()

    def ends(parts: list[np.ndarray]) -> list[float]:
        x = np.concatenate(parts)
        x = x + rng.standard_normal(len(x)).astype(np.float32) * np.float32(10 ** (noise_dbfs / 20))
        seg, out = Segmenter(settings, vad=vad), []
        for i in range(0, len(x), block):
            out += [(i + block) / 16000] * len(seg.push(x[i : i + block]))
        return out

    lat = []
    for lead in np.arange(1.0, 1.032, 0.004):
        (at,) = ends([_quiet(lead), q, _quiet(2.0)])
        lat.append(1e3 * (at - lead - len(q) / 16000))
    print(f"hangover {settings.min_silence_ms} ms, noise {noise_dbfs:.0f} dBFS; end of sound -> utterance ended: "
          f"median {statistics.median(lat):.0f} ms, {min(lat):.0f}-{max(lat):.0f} ms over {len(lat)} alignments")  # fmt: skip
    hop = 160
    lv = [level_dbfs(q[i : i + hop]) for i in range(0, len(q) - hop, hop)]
    for i in range(len(lv)):
        if not (
            settings.fragment_s * 16000 < i * hop < len(q) - 3200 and lv[i] < -45 and lv[i] == min(lv[i - 5 : i + 6])
        ):
            continue
        a = b = i * hop
        while a >= hop and level_dbfs(q[a - hop : a]) < -45:
            a -= hop
        while b + hop <= len(q) and level_dbfs(q[b : b + hop]) < -45:
            b += hop
        longest = None
        for pause in np.arange(0.40, 0.80, 0.01):
            leads = (1.0, 1.007, 1.015, 1.023)
            if any(len(ends([_quiet(lead), q[:a], _quiet(pause), q[b:], _quiet(2.0)])) != 1 for lead in leads):
                break
            longest = pause
        said = "none" if longest is None else f"{longest:.2f} s"
        print(f"gap between words at {i * hop / 16000:.2f} s (its own quiet {(b - a) / 16:.0f} ms): longest pause "
              f"that stays one question {said}")  # fmt: skip
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
        room = self.sd.room
        if room is not None:
            room.open(t0, len(audio))
        pos = 0
        while not self._stop.is_set() and pos + self.block <= len(audio):
            # A block reaches the callback once it has been recorded: at its last sample's time.
            self._stop.wait(max(0.0, t0 + (pos + self.block) / self.rate - time.perf_counter()))
            buf[:, 0] = audio[pos : pos + self.block]
            if room is not None:
                buf[:, 0] += room.heard(pos, self.block)
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
    (two blocks) has room, as a real stream does. It keeps when its sound ends (``sd.sound_end``: the end of the
    last block written, or the moment ``abort`` dropped what was still to play) and hands what it plays to the
    room, when there is one."""

    def __init__(self, sd: BenchSoundDevice, samplerate=22050, blocksize=441, **_: object) -> None:
        self.sd, self.rate = sd, int(samplerate)
        self.buffer_s = self.latency = 2 * int(blocksize) / self.rate  # its buffer, as PortAudio reports it
        self.played_until = 0.0

    def start(self) -> None:
        self.played_until = time.perf_counter()

    def write(self, data: np.ndarray) -> bool:
        now = time.perf_counter()
        begin = max(self.played_until, now)
        self.played_until = begin + len(data) / self.rate
        self.sd.sound_end = self.played_until
        if self.sd.room is not None:
            self.sd.room.play(np.asarray(data, np.float32)[:, 0], self.rate, begin)
        time.sleep(max(0.0, self.played_until - self.buffer_s - time.perf_counter()))
        return False

    def abort(self) -> None:
        now = time.perf_counter()
        self.sd.sound_end = min(self.sd.sound_end, now)
        if self.sd.room is not None:
            self.sd.room.cut(now)
        self.played_until = now

    def stop(self) -> None:
        pass

    close = stop


class Room:
    """What the bench's speakers play reaches its microphone ``delay_s`` later, times ``gain``, low-passed (a
    loudspeaker and a small room, as ``tests/app/voice/test_echo.py`` simulates them): the echo the canceller
    must take out."""

    def __init__(self, delay_s: float = 0.05, gain: float = 0.5) -> None:
        self.delay_s, self.gain = delay_s, gain
        self.taps = np.array([0.6, 0.3, 0.1], np.float32)
        self.lock = threading.Lock()
        self.t0 = 0.0
        self.echo = np.zeros(0, np.float32)
        self.resampler = None  # one stream of sound (from a start to an abort), resampled as one
        self.cursor = 0

    def open(self, t0: float, n: int) -> None:
        """The microphone's sample 0 is heard at perf_counter ``t0``; it hears ``n`` samples."""
        with self.lock:
            self.t0, self.echo, self.resampler = t0, np.zeros(n + 16000, np.float32), None

    def _pos(self, t: float) -> int:
        return int(round((t - self.t0 + self.delay_s) * 16000))

    def play(self, block: np.ndarray, rate: int, begin: float) -> None:
        """The device plays ``block`` from ``begin`` on: back to back with the block before, or (the first block
        after a start) from ``begin``. The whole stream is resampled and filtered as one signal, as air and
        loudspeakers are continuous: a block edge in the echo would be a distortion no canceller can model."""
        from app.voice.audio import Resampler

        with self.lock:
            if self.resampler is None:
                self.resampler, self.cursor = Resampler(rate, 16000, quality="QQ"), self._pos(begin)
            x = np.convolve(self.resampler.process(block), self.taps) * self.gain  # its tail is added, not lost
            pos = self.cursor
            lo, hi = max(0, pos), min(len(self.echo), pos + len(x))
            if hi > lo:
                self.echo[lo:hi] += x[lo - pos : hi - pos]
            self.cursor += len(x) - len(self.taps) + 1

    def cut(self, t: float) -> None:
        """The device stopped at ``t``: nothing it was still to play reaches the microphone."""
        with self.lock:
            self.echo[max(0, self._pos(t)) :] = 0.0
            self.resampler = None

    def heard(self, pos: int, n: int) -> np.ndarray:
        with self.lock:
            out = self.echo[pos : pos + n].copy()
        return np.pad(out, (0, n - len(out)))


class BenchSoundDevice:
    """The part of ``sounddevice`` the Microphone and the Speaker use: one input playing ``audio`` (16 kHz) in
    real time through the callback, one output that plays at real time and records when it was written to."""

    PortAudioError = RuntimeError

    def __init__(self) -> None:
        self.audio = np.zeros(0, np.float32)
        self.mic_started = 0.0
        self.sound_end = 0.0
        self.room: Room | None = None
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


def _trial(recognizer, sd: BenchSoundDevice, audio: np.ndarray, speaker=None, timeout: float = 60.0, echo=None):
    """Listen to one playback of ``audio``: (the microphone's start on perf_counter, the Heard, or None). With
    ``echo`` (a canceller fed by ``speaker``) the microphone hears the room, through the canceller; without it,
    headphones."""
    from app.voice.audio import Microphone
    from app.voice.input import VoiceInput

    sd.audio = audio
    done, heard = threading.Event(), []
    voice = VoiceInput(
        recognizer, lambda q: None, Microphone(sd=sd), speaker=speaker, headphones=echo is None, echo=echo,
        on_heard=lambda h: (heard.append(h), done.set()),
    )  # fmt: skip
    voice.start()  # warms up the recogniser and Silero, then opens the microphone
    done.wait(len(audio) / 16000 + timeout)
    voice.stop()
    return sd.mic_started, (heard[0] if heard else None)


#: Through echo cancellation the question is this many dB under the answer's echo, and starts this long after the
#: microphone opens: the canceller has learnt the room and settled (app.voice.echo.SETTLE_S), as for every answer
#: after the first one it hears (tests/app/voice/test_echo.py asks while it settles).
ECHO_QUESTION_DB, ECHO_LEAD_S = -10.0, 6.0


def _active_rms(x: np.ndarray) -> float:
    loud = x[np.abs(x) > 1e-3]
    return float(np.sqrt(np.mean(np.square(loud, dtype=np.float64))))


def measure_barge_in(
    make_recognizer, question: np.ndarray, trials: int, echo: bool = False
) -> tuple[float | None, list[float]]:
    """Speech onset in the playback -> the end of the answer's sound (its last block played, or where the device
    dropped the rest), in seconds: first, then warm trials. Headphones, or with ``echo`` a room that carries the
    answer back into the microphone and the echo canceller taking it out, the question ``ECHO_QUESTION_DB`` under
    the echo."""
    from app.voice.audio import resample
    from app.voice.echo import EchoCanceller, EchoReference
    from app.voice.synth import synthesize
    from app.voice.tts import Speaker

    sd = BenchSoundDevice()
    reference = EchoReference() if echo else None
    speaker = Speaker(sd=sd, reference=reference)
    recognizer = make_recognizer()
    if echo:
        sd.room = Room()
        far, rate = synthesize(ANSWER.split(".")[0])
        echo_level = _active_rms(np.convolve(resample(far, rate, 16000) * sd.room.gain, sd.room.taps))
        question = question * (echo_level * 10 ** (ECHO_QUESTION_DB / 20) / _active_rms(question))
    first, warm = None, []
    try:
        for k in range(trials + 1):
            lead = ECHO_LEAD_S if echo else 0.3 if k == 0 else 1.0
            audio = np.concatenate([_quiet(lead), question, _quiet(1.5)])
            audio += np.random.default_rng(k).standard_normal(len(audio)).astype(np.float32) * 0.001
            sd.sound_end = 0.0
            speaker.say(ANSWER)
            deadline = time.perf_counter() + 30
            while not speaker.speaking and time.perf_counter() < deadline:
                time.sleep(0.01)
            canceller = EchoCanceller(reference) if echo else None
            started, heard = _trial(recognizer, sd, audio, speaker=speaker, echo=canceller)
            onset = started + lead
            if not speaker.speaking and heard is not None and sd.sound_end > onset:
                lat = sd.sound_end - onset
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
    from app.voice.synth import synthesize

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
    ap.add_argument("--pauses", action="store_true", help="the segmenter alone: when it ends, what pause it bridges")
    ap.add_argument("--noise-dbfs", type=float, default=-60.0, help="with --pauses: the white noise under the question")
    args = ap.parse_args(argv)
    if args.vad_rtf:
        return vad_rtf()
    if args.pauses:
        return pauses(args.noise_dbfs)

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
        first, warm = measure_barge_in(make, question, args.trials, echo=True)
        print(_row(f"barge-in ({model}, echo cancelled)", device, first, warm))
        first, warm = measure_end_to_question(make, question, args.trials)
        print(_row(f"end of speech -> question ({model})", device, first, warm))
    print("barge-in = question onset in the microphone's playback -> the end of the answer's sound; goal < 300 ms")
    print(f"echo cancelled = a room carries the answer back into the microphone, the question {-ECHO_QUESTION_DB:.0f} "
          "dB under its echo; the canceller takes the echo out")  # fmt: skip
    from app.voice.vad import VadSettings

    print(f"end of speech -> question = VAD hangover ({VadSettings().min_silence_ms} ms of silence, timed by the level) "
          "+ recognition not hidden in it; goal < 600 ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
