"""Voice activity: the Silero model on its own onnxruntime thread (against the torch model it replaced) and its
state handling, the streaming segmenter (hangover, minimum speech, maximum length, pre-roll, stream time),
whole-recording segmentation (one array or blocks) and push-to-talk."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from app.voice import vad as vad_module
from app.voice.audio import resample
from app.voice.vad import WINDOW, PushToTalk, Segmenter, SileroVad, Utterance, VadSettings, _model_path, segment

RATE = 16000


def speech16(speech) -> np.ndarray:
    return resample(speech.samples, speech.rate, RATE)


def push_in_blocks(seg: Segmenter, x: np.ndarray, seed: int = 0) -> list[Utterance]:
    """Feed ``x`` in random block sizes, as a microphone consumer would, then end the stream."""
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        out += seg.push(x[i : i + n])
        i += n
    return out + seg.flush()


def burst(start: float, end: float, total: float, amp: float = 0.3) -> np.ndarray:
    """A 300 Hz tone from ``start`` to ``end`` seconds in ``total`` seconds of silence (for the EnergyVad)."""
    x = np.zeros(int(total * RATE), np.float32)
    a, b = int(start * RATE), int(end * RATE)
    x[a:b] = amp * np.sin(2 * np.pi * 300 * np.arange(b - a) / RATE)
    return x


# --- the model ----------------------------------------------------------------------------------------------


def test_silero_hears_speech_not_silence(speech, compose):
    vad = SileroVad()
    x = compose([1.0, speech16(speech), 1.0], RATE)
    p = vad.probabilities(x)
    lead = int(1.0 * RATE) // WINDOW
    assert p[: lead - 1].max() < 0.2  # faint noise is not speech
    assert np.median(p[lead + 2 : lead + 2 + int(speech.seconds * RATE) // WINDOW - 4]) > 0.8


def test_silero_state_is_per_instance_and_reset(speech, compose):
    """One network serves the process; each SileroVad keeps its own recurrent state, so two streams
    interleaved window by window give what each gives alone, and reset() starts a stream afresh."""
    a = compose([0.3, speech16(speech)], RATE, seed=1)[: 40 * WINDOW]
    b = compose([speech16(speech)], RATE, seed=2)[: 40 * WINDOW]
    va, vb = SileroVad(), SileroVad()
    alone_a = va.probabilities(a)
    alone_b = vb.probabilities(b)
    va.reset()
    vb.reset()
    mixed_a, mixed_b = [], []
    for i in range(40):
        mixed_a.append(va.probability(a[i * WINDOW : (i + 1) * WINDOW]))
        mixed_b.append(vb.probability(b[i * WINDOW : (i + 1) * WINDOW]))
    assert np.allclose(mixed_a, alone_a, atol=1e-6) and np.allclose(mixed_b, alone_b, atol=1e-6)
    with pytest.raises(ValueError, match="512"):
        va.probability(np.zeros(100, np.float32))


class JitVad:
    """The Silero TorchScript model (what the app ran before) behind the SpeechProbability interface: the
    reference the ONNX runtime is compared with."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice
            warnings.simplefilter("ignore", FutureWarning)
            self.model = torch.jit.load(str(_model_path().with_name("silero_vad.jit")))
        self.model.eval()

    def probability(self, window: np.ndarray) -> float:
        with self.torch.no_grad():
            return float(self.model(self.torch.from_numpy(np.array(window, np.float32))[None], RATE).item())

    def reset(self) -> None:
        self.model.reset_states()


@pytest.fixture(scope="module")
def jit_vad():
    return JitVad()


def test_onnx_runtime_matches_the_torch_model(speech, compose, jit_vad):
    x = compose([1.0, speech16(speech), 0.5, speech16(speech), 1.0], RATE)
    jit_vad.reset()
    reference = np.array([jit_vad.probability(x[i : i + WINDOW]) for i in range(0, len(x) - WINDOW + 1, WINDOW)])
    onnx = SileroVad().probabilities(x)[: len(reference)]
    assert np.max(np.abs(onnx - reference)) < 1e-4  # 8e-7 measured
    assert reference.max() > 0.9 and reference.min() < 0.1  # the comparison covered speech and silence


def test_onnx_runtime_segments_like_the_torch_model(speech, compose, jit_vad):
    s = speech16(speech)
    x = compose([1.0, s, 1.5, s, 0.25, s, 1.0], RATE, seed=3)
    with_onnx = segment(x, RATE, VadSettings())
    with_jit = segment(x, RATE, VadSettings(), vad=jit_vad)
    assert len(with_onnx) == 2
    assert [(u.start, u.end, u.audio_start, len(u.samples)) for u in with_onnx] == [
        (u.start, u.end, u.audio_start, len(u.samples)) for u in with_jit
    ]


def test_model_runs_on_its_own_single_thread_and_leaves_torch_alone(monkeypatch):
    """The VAD must not share (or change) torch's process-wide thread pool, which the video engine uses."""
    import torch

    monkeypatch.setattr(vad_module, "_SESSION", None)  # load afresh, as on first use in a process
    before = torch.get_num_threads()
    session = vad_module._load_model()
    assert torch.get_num_threads() == before
    opts = session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_warm_up_runs_the_model_and_starts_afresh(speech, compose):
    x = compose([0.2, speech16(speech)], RATE, seed=4)[: 20 * WINDOW]
    fresh = SileroVad().probabilities(x)
    vad = SileroVad()
    assert vad.warm_up() is vad
    assert np.array_equal(vad.probabilities(x), fresh)  # the warm-up window left no trace in the state


# --- the segmenter, with real speech ------------------------------------------------------------------------


def test_one_question_in_blocks_of_any_size(recording):
    rec = recording(RATE)
    seg = Segmenter(VadSettings())
    utterances = push_in_blocks(seg, rec.samples)
    assert len(utterances) == 1
    u = utterances[0]
    assert abs(u.start - rec.speech_start) < 0.3 and abs(u.end - rec.speech_end) < 0.3
    # The audio is the recording's own samples from the pre-roll on.
    a = int(round(u.audio_start * RATE))
    assert u.audio_start == pytest.approx(u.start - 0.3, abs=1e-9)
    assert np.array_equal(u.samples, rec.samples[a : a + len(u.samples)])
    assert u.audio_end >= u.end


def test_long_pause_gives_two_utterances(speech, compose):
    s = speech16(speech)
    x = compose([1.0, s, 1.5, s, 1.0], RATE)
    utterances = segment(x, RATE, VadSettings())
    assert len(utterances) == 2
    first_end, second_start = 1.0 + speech.seconds, 1.0 + speech.seconds + 1.5
    assert abs(utterances[0].end - first_end) < 0.3
    assert abs(utterances[1].start - second_start) < 0.3
    assert utterances[0].audio_end <= utterances[1].audio_start  # no audio in both


def test_pause_shorter_than_the_hangover_does_not_split(speech, compose):
    s = speech16(speech)
    x = compose([1.0, s, 0.25, s, 1.0], RATE)
    utterances = segment(x, RATE, VadSettings(min_silence_ms=500))
    assert len(utterances) == 1
    assert abs(utterances[0].end - (1.0 + 2 * speech.seconds + 0.25)) < 0.3


def _ended_at(settings: VadSettings, x: np.ndarray, block: int = 320) -> list[tuple[Utterance, float]]:
    """Push ``x`` in microphone blocks (20 ms): each utterance with the time of the block that ended it."""
    seg, out = Segmenter(settings), []
    for i in range(0, len(x), block):
        out += [(u, (i + block) / RATE) for u in seg.push(x[i : i + block])]
    return out


def test_the_silence_is_timed_by_the_level_not_by_silero_lag(speech, compose):
    """Silero's probability falls through the hysteresis band 60-100 ms after the sound stops; the level times
    the silence, so the utterance ends the hangover (plus a window and a block) after the sound, not ~100 ms
    later, and its end is where the sound ended."""
    s = speech16(speech)
    settings = VadSettings()
    for lead in (1.0, 1.011, 1.023):  # the end falls at different places in the windows
        (u, at), *rest = _ended_at(settings, compose([lead, s, 2.0], RATE))
        sound_end = lead + len(s) / RATE
        assert not rest
        assert -0.05 < u.end - sound_end < 0.02
        assert at - sound_end < settings.min_silence_ms / 1000 + (WINDOW + 320) / RATE


def _word_gaps(s: np.ndarray, after: float) -> list[int]:
    """The quietest 10 ms of each stretch between words past ``after`` s (and 0.2 s before the end)."""
    from app.voice.audio import level_dbfs

    hop = RATE // 100
    lv = np.array([level_dbfs(s[i : i + hop]) for i in range(0, len(s) - hop, hop)])
    return [
        i * hop
        for i in range(len(lv))
        if after * RATE < i * hop < len(s) - 0.2 * RATE and lv[i] == lv[max(0, i - 5) : i + 6].min() and lv[i] < -45
    ]


def test_a_half_second_pause_at_any_word_gap_keeps_one_question_and_a_longer_one_ends_it(speech, compose):
    """After a whole question's worth of speech (past ``fragment_s``) the hangover is the short one: a 0.5 s pause
    between any two words is bridged (the next word's rise holds the utterance open while Silero decides), a
    0.8 s pause ends the question there."""
    s = speech16(speech)
    settings = VadSettings()
    gaps = _word_gaps(s, after=settings.fragment_s)
    assert gaps, "no pause between words past fragment_s in the synthesised question"
    for cut in gaps:
        for lead in (1.0, 1.011, 1.023):
            bridged = _ended_at(settings, compose([lead, s[:cut], 0.5, s[cut:], 2.0], RATE))
            assert len(bridged) == 1, (cut / RATE, lead, [(u.start, u.end) for u, _ in bridged])
        split = _ended_at(settings, compose([1.0, s[:cut], 0.8, s[cut:], 2.0], RATE))
        assert len(split) == 2 and split[0][0].end == pytest.approx(1.0 + cut / RATE, abs=0.05)


def test_a_knock_or_louder_noise_in_the_silence_holds_the_end_once_and_briefly(speech, compose):
    """A rise in the level during the hangover that Silero does not take for speech (a knock; the noise getting
    louder and staying so) keeps the utterance open for ONSET_WINDOWS windows at most, then the utterance ends
    where the speech did."""
    s = speech16(speech)
    settings = VadSettings()
    hangover, hold = settings.min_silence_ms / 1000, vad_module.ONSET_WINDOWS * WINDOW / RATE
    rng = np.random.default_rng(3)
    knock = np.concatenate([0.3 * rng.standard_normal(320), np.zeros(int(1.5 * RATE))]).astype(np.float32)
    louder = (0.03 * rng.standard_normal(int(2.0 * RATE))).astype(np.float32)  # -30 dBFS noise from then on
    for after in (knock, louder):
        x = compose([1.0, s, 0.45, after], RATE)
        (u, at), *rest = _ended_at(settings, x)
        sound_end = 1.0 + len(s) / RATE
        assert not rest and -0.05 < u.end - sound_end < 0.02
        assert hangover < at - sound_end < hangover + hold + (WINDOW + 320) / RATE


def test_noise_as_loud_as_the_speech_leaves_the_silence_to_silero(speech, compose):
    """No clear drop in the level (speech over -10 dBFS-ish noise): the silence starts where Silero says."""
    seg = Segmenter(VadSettings())
    s = speech16(speech)
    noise = (0.05 * np.random.default_rng(4).standard_normal(int(5 * RATE))).astype(np.float32)
    x = noise.copy()
    x[RATE : RATE + len(s)] += s
    starts = []
    original = seg._silence_start
    seg._silence_start = lambda start, window: starts.append((start, original(start, window))) or starts[-1][1]
    for i in range(0, len(x), 320):
        seg.push(x[i : i + 320])
    assert starts and all(backdated == start for start, backdated in starts)


def test_long_speech_is_cut_at_max_utterance(speech, compose):
    s = speech16(speech)
    x = compose([0.5, s, 0.15, s, 0.15, s, 0.5], RATE)  # ~6.5 s without a hangover-long pause
    settings = VadSettings(max_utterance_s=2.5)
    utterances = segment(x, RATE, settings)
    assert len(utterances) >= 3
    for u in utterances:
        assert u.duration <= 2.5 + WINDOW / RATE
    for a, b in zip(utterances, utterances[1:], strict=False):
        assert a.end <= b.start and a.audio_end == pytest.approx(b.audio_start)  # cut, not overlapped
    assert abs(utterances[0].start - 0.5) < 0.3
    assert abs(utterances[-1].end - (0.5 + 3 * speech.seconds + 0.3)) < 0.3


def test_whole_recording_at_another_rate(recording):
    rec = recording(48000)
    utterances = segment(rec.samples, 48000)
    assert len(utterances) == 1 and utterances[0].rate == RATE
    assert abs(utterances[0].start - rec.speech_start) < 0.3 and abs(utterances[0].end - rec.speech_end) < 0.3


def test_recording_file_segmented_in_blocks_like_whole(recording, tmp_path):
    """``voice segment`` and ``--ask-audio`` can stream a file's blocks through segment(): the same utterances
    as the whole array, without the whole file in memory."""
    from app.voice.wav import open_audio, write_wav

    rec = recording(48000)
    path = write_wav(tmp_path / "question.wav", rec.samples, 48000)
    with open_audio(path) as f:
        whole = segment(f.read(), f.rate)
        blocks = segment(f.blocks(4000), f.rate)
    assert len(whole) == 1
    assert [(u.start, u.end) for u in blocks] == [(u.start, u.end) for u in whole]
    assert np.array_equal(blocks[0].samples, whole[0].samples)


def test_segmenter_resamples_its_input(recording):
    rec = recording(48000)
    utterances = push_in_blocks(Segmenter(VadSettings(), rate=48000), rec.samples)
    assert len(utterances) == 1
    assert abs(utterances[0].start - rec.speech_start) < 0.3 and abs(utterances[0].end - rec.speech_end) < 0.3


# --- the segmenter's rules, with an energy VAD (exact timings) ----------------------------------------------


def test_pre_roll_and_post_roll_exact(energy_vad):
    x = burst(1.0, 2.0, 4.0)
    (u,) = segment(x, RATE, VadSettings(pre_roll_ms=300, post_roll_ms=200), vad=energy_vad)
    first = (int(1.0 * RATE) // WINDOW) * WINDOW  # the window the tone starts in
    assert u.start == pytest.approx(first / RATE)
    assert u.audio_start == pytest.approx(u.start - 0.3, abs=1 / RATE)
    a = int(round(u.audio_start * RATE))
    assert np.array_equal(u.samples, x[a : a + len(u.samples)])
    assert np.all(u.samples[: int(0.25 * RATE)] == 0)  # the pre-roll is the silence before the speech
    assert u.end == pytest.approx(2.0, abs=WINDOW / RATE)
    assert u.audio_end == pytest.approx(u.end + 0.2, abs=1 / RATE)


def test_short_burst_is_ignored(energy_vad):
    x = burst(1.0, 1.1, 3.0)  # 100 ms: a click, not speech
    assert segment(x, RATE, VadSettings(min_speech_ms=250), vad=energy_vad) == []


def test_hard_cut_without_pauses_keeps_every_sample_once(energy_vad):
    x = burst(0.5, 4.0, 5.0)
    utterances = segment(x, RATE, VadSettings(max_utterance_s=1.0, pre_roll_ms=300), vad=energy_vad)
    assert len(utterances) == 4
    assert all(u.duration <= 1.0 + WINDOW / RATE for u in utterances)
    joined = np.concatenate([u.samples for u in utterances])
    a = int(round(utterances[0].audio_start * RATE))
    assert np.array_equal(joined, x[a : a + len(joined)])  # contiguous: nothing lost, nothing twice
    assert utterances[-1].end == pytest.approx(4.0, abs=WINDOW / RATE)


def test_max_utterance_cuts_at_a_pause_past_halfway(energy_vad):
    """A breath (200 ms, shorter than the hangover) after halfway is where a long utterance is cut, not mid-word;
    the audio is split in the middle of the pause."""
    x = burst(0.5, 2.0, 5.0) + burst(2.2, 4.0, 5.0)
    first, second = segment(x, RATE, VadSettings(max_utterance_s=2.5), vad=energy_vad)
    assert first.end == pytest.approx(2.0, abs=WINDOW / RATE)
    assert second.start == pytest.approx(2.2, abs=WINDOW / RATE)
    assert first.audio_end == pytest.approx(second.audio_start) == pytest.approx(2.1, abs=WINDOW / RATE)
    assert second.end == pytest.approx(4.0, abs=WINDOW / RATE)


def test_indicator_and_stream_time(energy_vad):
    seg = Segmenter(VadSettings(min_speech_ms=250, min_silence_ms=500), vad=energy_vad)
    x = burst(1.0, 2.0, 3.0)
    block = 320
    seen_speech_at = None
    out = []
    for i in range(0, len(x), block):
        out += seg.push(x[i : i + block], t0=100.0 if i == 0 else None)
        if seg.in_speech and seen_speech_at is None:
            seen_speech_at = (i + block) / RATE
            assert seg.speech_started_at == pytest.approx(100.0 + 0.992)
    # Shown once the speech lasted min_speech (not at the first loud window), gone after the hangover.
    assert seen_speech_at == pytest.approx(1.25, abs=0.05)
    assert not seg.in_speech and seg.speech_started_at is None
    assert len(out) == 1 and out[0].start == pytest.approx(100.992) and out[0].end == pytest.approx(102.0, abs=0.04)
    assert seg.flush() == []


def test_flush_ends_speech_in_progress_and_reset_forgets(energy_vad):
    seg = Segmenter(VadSettings(), vad=energy_vad)
    x = burst(0.5, 2.0, 2.0)  # the stream ends while talking
    assert seg.push(x) == []
    assert seg.in_speech
    (u,) = seg.flush()
    assert u.end == pytest.approx(2.0, abs=WINDOW / RATE) and not seg.in_speech
    seg.push(burst(0.0, 1.0, 1.0))
    seg.reset()
    assert energy_vad.resets >= 2 and not seg.in_speech and seg.flush() == []


def test_settings_are_checked():
    with pytest.raises(ValueError):
        VadSettings(threshold=1.5)
    with pytest.raises(ValueError):
        VadSettings(min_silence_ms=-1)


# --- push-to-talk -------------------------------------------------------------------------------------------


def ramp_stream(ptt: PushToTalk, seconds: float, block: int = 320) -> np.ndarray:
    """Push a ramp (sample i has value i) so the test can see exactly which samples came back."""
    x = np.arange(int(seconds * RATE), dtype=np.float32)
    for i in range(0, len(x), block):
        ptt.push(x[i : i + block])
    return x


def test_push_to_talk_includes_the_pre_roll():
    ptt = PushToTalk(rate=RATE, pre_roll_ms=300)
    x = np.arange(3 * RATE, dtype=np.float32)
    for i in range(0, len(x), 320):
        if i == 1 * RATE:
            ptt.press()  # at now = 1.0 s
            assert ptt.pressed
        ptt.push(x[i : i + 320])
    u = ptt.release(2.0)
    assert not ptt.pressed
    assert (u.start, u.end, u.audio_start) == (1.0, 2.0, pytest.approx(0.7))
    assert np.array_equal(u.samples, x[int(0.7 * RATE) : 2 * RATE])


def test_push_to_talk_too_short_or_not_pressed():
    ptt = PushToTalk(rate=RATE, pre_roll_ms=300, min_ms=300)
    ramp_stream(ptt, 2.0)
    assert ptt.release() is None  # never pressed
    ptt.press(1.0)
    assert ptt.release(1.15) is None  # a 150 ms tap
    assert not ptt.pressed


def test_push_to_talk_idle_memory_is_bounded_and_stuck_key_capped():
    ptt = PushToTalk(rate=RATE, pre_roll_ms=300, max_s=1.0)
    ramp_stream(ptt, 10.0)
    assert ptt._kept <= int(1.3 * RATE) + 320  # idle: only the pre-roll (and a second of slack)
    ptt.press()
    ramp_stream(ptt, 3.0)  # held three times max_s
    u = ptt.release()
    assert u.end == pytest.approx(13.0) and len(u.samples) == int(1.3 * RATE)
    ramp_stream(ptt, 1.0)  # after the capped press the store starts over, contiguous
    ptt.press()
    ramp_stream(ptt, 0.5)
    u2 = ptt.release()
    assert len(u2.samples) == int(0.8 * RATE)
