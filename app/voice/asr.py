"""Speech recognition: 16 kHz mono samples -> text, through transformers' ASR pipeline (Whisper).

``Recognizer`` takes ``"demo"`` (the tiny offline Whisper of ``model.tiny_whisper``: words that mean
nothing, for tests and trying the plumbing), a Hugging Face id (downloaded once into the hub cache
through ``model.hub``, which honours HF_HUB_OFFLINE) or a local model folder. The pipeline is built
lazily on the first ``load()`` or ``transcribe()``, in fp16 on a CUDA GPU and fp32 on the CPU. Every
load problem is a ``VoiceError`` naming the model and what to do.

:meth:`Recognizer.recognise` also says how sure Whisper was (:class:`Transcript`: the probability of its
no-speech token and the mean log-probability of the words), and :func:`unheard` turns that, Whisper's
stock phrases on silence and text without words into the reason an utterance is not taken as a question.
"""

from __future__ import annotations

import logging
import string
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.voice import VoiceError
from model.hub import ProgressFn

log = logging.getLogger(__name__)

DEMO_ASR_MODEL = "demo"
DEFAULT_GPU_MODEL = "openai/whisper-small"
DEFAULT_CPU_MODEL = "openai/whisper-base"
# whisper-small in fp16 needs ~0.5 GB of weights plus activations; 2 GB free leaves room for the
# video model's own growth (its KV cache) beside it.
GPU_MIN_FREE_BYTES = 2 * 1024**3
SAMPLING_RATE = 16000
WHISPER_WINDOW_S = 30.0  # longer audio needs Whisper's long-form (timestamped) decoding
_AUTO_LANGUAGES = ("", "auto")
# Whisper's own rule for "nobody spoke" (openai/whisper's transcribe(): no_speech_threshold 0.6 with
# logprob_threshold -1.0): a likely no-speech token AND unsure words. Either alone is not enough: a short
# clear question can start with a high no-speech probability, and a quiet speaker gives unsure words.
NO_SPEECH_PROB = 0.6
NO_SPEECH_LOGPROB = -1.0
# Below this mean log-probability (a geometric-mean token probability under 0.2) the words are guesses;
# openai/whisper retries at a higher temperature already below -1.0.
MIN_LOGPROB = -1.6
# What Whisper writes for silence, breath, music or noise: its training subtitles' credits and sign-offs.
# Matched against the whole transcript (lower case, without punctuation), never inside a longer question.
HALLUCINATIONS = frozenset(
    {
        "you",
        "thank you",
        "thank you very much",
        "thanks",
        "thanks for watching",
        "thank you for watching",
        "thank you so much for watching",
        "please subscribe",
        "like and subscribe",
        "bye",
        "bye bye",
        "okay",
        "so",
        "hmm",
        "music",
        "applause",
        "silence",
        "subtitles by the amaraorg community",
        "subtitles by the amara org community",
        "transcription by castingwords",
    }
)
_PUNCTUATION = str.maketrans("", "", string.punctuation + "\u2026\u00bf\u00a1\u266a\u266b")


@dataclass(frozen=True)
class Transcript:
    """What the recogniser heard. ``no_speech_prob``: Whisper's probability that the audio holds no speech
    (its ``<|nospeech|>`` token right after the start of transcript); ``avg_logprob``: the mean natural-log
    probability of the tokens it wrote. Both None when the model does not give them (not Whisper, or
    long-form audio)."""

    text: str
    no_speech_prob: float | None = None
    avg_logprob: float | None = None

    @property
    def confidence(self) -> float | None:
        """0..1: the geometric mean of the written tokens' probabilities (None when unknown)."""
        return None if self.avg_logprob is None else float(np.exp(self.avg_logprob))


def unheard(
    t: Transcript,
    no_speech_prob: float | None = NO_SPEECH_PROB,
    min_logprob: float | None = MIN_LOGPROB,
) -> str | None:
    """Why ``t`` is not a question, or None when it is: no words at all, one of Whisper's phrases for
    silence and noise, no speech by Whisper's own rule, or words it was unsure of. A threshold of None
    switches that rule off (the demo model's scores mean nothing)."""
    words = t.text.lower().translate(_PUNCTUATION).split()
    if not words:
        return "no words"
    if " ".join(words) in HALLUCINATIONS:
        return "only noise (Whisper's usual words for silence)"
    if t.avg_logprob is None:
        return None
    if no_speech_prob is not None and t.no_speech_prob is not None:
        if t.no_speech_prob > no_speech_prob and t.avg_logprob < NO_SPEECH_LOGPROB:
            return "no speech"
    if min_logprob is not None and t.avg_logprob < min_logprob:
        return f"unclear speech ({t.confidence:.0%} sure)"
    return None


def _free_gpu_bytes() -> int:
    """Free memory of the current CUDA GPU, 0 without one."""
    try:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info()[0])
    except Exception as e:  # noqa: BLE001 - a broken driver means "no usable GPU" for this choice
        log.debug("could not read free GPU memory: %s", e)
    return 0


def default_asr_model(free_gpu_bytes: int | None = None) -> str:
    """whisper-small where a GPU has >= 2 GB free, whisper-base otherwise (and on the CPU, where
    small's extra accuracy costs about a second per question)."""
    if free_gpu_bytes is None:
        free_gpu_bytes = _free_gpu_bytes()
    return DEFAULT_GPU_MODEL if free_gpu_bytes >= GPU_MIN_FREE_BYTES else DEFAULT_CPU_MODEL


def _looks_like_hub_id(name: str) -> bool:
    """``owner/name`` that is not an existing path (the same rule as the video model's loader)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).expanduser().exists()


def _whisper_language(language: str, generation_config: Any) -> str:
    """The language code Whisper's generate() accepts for ``language`` ("en", "English", "<|en|>"),
    checked against the model's own languages; ValueError naming the choices otherwise."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    key = language.strip().lower()
    code = key[2:-2] if key.startswith("<|") and key.endswith("|>") else TO_LANGUAGE_CODE.get(key, key)
    available = sorted(t[2:-2] for t in (getattr(generation_config, "lang_to_id", None) or {}))
    if code not in LANGUAGES or code not in available:
        raise ValueError(f"language '{language}' is not one this model knows ({', '.join(available) or 'none'})")
    return code


def _reason(e: BaseException) -> str:
    """One readable line for a transformers loading error (whose messages run to pages)."""
    text = str(e).strip()
    if text.startswith("Could not load model"):
        # The pipeline tried every ASR class; the list of classes says nothing to a user.
        return "it is not a speech recognition model transformers can load (a Whisper checkpoint is expected)"
    first = text.splitlines()[0].rstrip(":") if text else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


class Recognizer:
    """Speech to text with one transformers ASR pipeline, loaded on first use.

    ``language=None`` (or "auto") lets Whisper detect the language of each utterance; otherwise
    every utterance is transcribed as that language. ``transcribe`` is serialised by a lock so one
    worker thread (or several, taking turns) can call it. ``no_speech_prob`` and ``min_logprob``: the
    thresholds :meth:`unheard` applies (None: that rule off; the demo model has both off).
    """

    def __init__(
        self,
        model: str | Path = DEMO_ASR_MODEL,
        device: str = "auto",
        language: str | None = None,
        progress: ProgressFn | None = None,
        no_speech_prob: float | None = NO_SPEECH_PROB,
        min_logprob: float | None = MIN_LOGPROB,
    ) -> None:
        self.model = str(model)
        # The demo Whisper has random weights: its scores say nothing, so only its empty text is filtered.
        demo = self.model == DEMO_ASR_MODEL
        self.no_speech_prob = None if demo else no_speech_prob
        self.min_logprob = None if demo else min_logprob
        self.device = device
        self.language = None if language is None or language.strip().lower() in _AUTO_LANGUAGES else language
        self.progress = progress
        self.load_seconds: float | None = None
        self.path: Path | None = None  # the local folder once loaded
        self._pipeline: Any = None
        self._generate_kwargs: dict[str, Any] = {}
        self._warm = False
        self._lock = threading.RLock()

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    @property
    def pipeline(self) -> Any:
        """The transformers pipeline (None before ``load()``)."""
        return self._pipeline

    def _fail(self, reason: str) -> VoiceError:
        reason = reason.strip().rstrip(".")
        return VoiceError(
            f"Speech recognition model '{self.model}' could not be loaded: {reason}; "
            "choose another in Voice > Voice settings (or the offline demo recogniser, 'demo', to try the plumbing)"
        )

    def _resolve_folder(self) -> Path:
        from model.errors import ModelLoadError

        if self.model == DEMO_ASR_MODEL:
            from model.tiny_whisper import ensure_demo_whisper

            return ensure_demo_whisper()
        if _looks_like_hub_id(self.model):
            from model.hub import download_model

            try:
                return download_model(self.model, progress=self.progress)
            except ModelLoadError as e:
                raise self._fail(str(e)) from None
        path = Path(self.model).expanduser()
        if not path.is_dir():
            raise self._fail(f"{path} is not a folder or a Hugging Face id (owner/name)")
        if not (path / "config.json").is_file():
            raise self._fail(f"{path} has no config.json, so it is not a Hugging Face model folder")
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            raise self._fail(f"{path} has no model weights (*.safetensors)")
        return path

    def load(self) -> None:
        """Build the pipeline (once). VoiceError naming the model when it cannot be loaded."""
        with self._lock:
            if self._pipeline is not None:
                return
            start = time.perf_counter()
            from model.device import resolve_device
            from model.errors import ModelLoadError

            try:
                device = resolve_device(self.device)
            except ModelLoadError as e:
                raise self._fail(str(e)) from None
            try:
                path = self._resolve_folder()
            except VoiceError:
                raise
            except Exception as e:  # noqa: BLE001 - e.g. no room to build the demo model in the data folder
                raise self._fail(_reason(e)) from None
            try:
                import torch
                from transformers import pipeline

                from model.hf_compat import quiet_whisper_generate_notice

                quiet_whisper_generate_notice()
                dtype = torch.float16 if device.type == "cuda" else torch.float32
                # safetensors only, as the README says: a folder with just pytorch_model.bin (a pickle) is refused.
                asr = pipeline(
                    "automatic-speech-recognition", model=str(path), device=device, dtype=dtype,
                    model_kwargs={"use_safetensors": True},
                )  # fmt: skip
            except Exception as e:  # noqa: BLE001 - transformers raises many types for a bad folder
                raise self._fail(_reason(e)) from None
            tokenizer, vocab = asr.tokenizer, getattr(asr.model.config, "vocab_size", 0) or 0
            if asr.feature_extractor is None or tokenizer is None or len(tokenizer) < 0.9 * vocab:
                # transformers builds an empty tokenizer when tokenizer.json / vocab.json are missing:
                # every transcript would then be "".
                raise self._fail(
                    f"{path} lacks its tokenizer or feature extractor files (tokenizer.json, *_config.json)"
                )
            try:
                self._generate_kwargs = self._language_kwargs(asr.model)
            except ValueError as e:
                raise self._fail(str(e)) from None
            self._pipeline, self.path = asr, path
            self.load_seconds = time.perf_counter() - start
            log.info("speech recognition %s loaded on %s in %.1f s", self.model, device, self.load_seconds)

    def _language_kwargs(self, model: Any) -> dict[str, Any]:
        """generate() arguments for the chosen language. Only Whisper takes a language; English-only
        Whisper checkpoints (``*.en``) reject one, so "en" is accepted and nothing is passed."""
        if self.language is None:
            return {}
        if getattr(model.config, "model_type", "") != "whisper":
            raise ValueError(f"a language can only be chosen for Whisper models, not {model.config.model_type}")
        gen = model.generation_config
        if not getattr(gen, "is_multilingual", False):
            if self.language.strip().lower() in ("en", "english"):
                return {}
            raise ValueError(f"it is an English-only model, so it cannot transcribe '{self.language}'")
        return {"language": _whisper_language(self.language, gen), "task": "transcribe"}

    def transcribe(self, samples: np.ndarray) -> str:
        """Text of float32 16 kHz mono ``samples`` (stereo is averaged), stripped; "" for no audio.
        Loads the model on first use. VoiceError if recognition fails."""
        return self.recognise(samples).text

    def recognise(self, samples: np.ndarray) -> Transcript:
        """:meth:`transcribe` with how sure the model was (:class:`Transcript`)."""
        audio = np.asarray(samples, dtype=np.float32)
        if audio.ndim == 2:  # (frames, channels), as sounddevice delivers it
            audio = audio.mean(axis=1)
        audio = np.ascontiguousarray(audio.reshape(-1))
        if audio.size == 0:
            return Transcript("")
        self.load()
        long_form = audio.size > WHISPER_WINDOW_S * SAMPLING_RATE
        with self._lock:
            try:
                if self._is_whisper() and not long_form:
                    return self._whisper(audio)
                kwargs: dict[str, Any] = {}
                if self._generate_kwargs:
                    kwargs["generate_kwargs"] = dict(self._generate_kwargs)
                if long_form and self._is_whisper():
                    kwargs["return_timestamps"] = True  # Whisper decodes beyond 30 s only with timestamps
                out = self._pipeline({"raw": audio, "sampling_rate": SAMPLING_RATE}, **kwargs)
            except Exception as e:  # noqa: BLE001 - out of memory, a driver error: the caller shows it
                raise VoiceError(f"Speech recognition with '{self.model}' failed: {type(e).__name__}: {e}") from e
        return Transcript(str(out.get("text", "") if isinstance(out, dict) else out).strip())

    def _whisper(self, audio: np.ndarray) -> Transcript:
        """One Whisper window through the pipeline's own feature extractor and model, keeping what the
        pipeline drops: the no-speech probability (the ``<|nospeech|>`` token's share of the first
        decoding step, as openai/whisper reads it) and the written tokens' log-probabilities."""
        import torch

        model, asr = self._pipeline.model, self._pipeline
        gen = model.generation_config
        features = asr.feature_extractor(audio, sampling_rate=SAMPLING_RATE, return_tensors="pt").input_features
        features = features.to(model.device, model.dtype)  # [1, mels, 3000]
        with torch.inference_mode():
            encoded = model.get_encoder()(features)
            start = torch.tensor([[gen.decoder_start_token_id]], device=model.device)
            first = model(encoder_outputs=encoded, decoder_input_ids=start).logits[0, -1].float()  # [vocab]
            # Whisper's no-speech token sits just before <|notimestamps|> (<|nocaptions|> in older vocabularies).
            no_speech = float(torch.softmax(first, -1)[gen.no_timestamps_token_id - 1])
            out = model.generate(
                encoder_outputs=encoded, return_dict_in_generate=True, output_logits=True, **self._generate_kwargs
            )
        tokens = out.sequences[0, -len(out.logits) :]  # the written tokens (after the prompt), end token included
        logits = torch.stack([step[0] for step in out.logits]).float()  # [written, vocab], before any processor
        logprobs = torch.log_softmax(logits, -1).gather(1, tokens[:, None])[:, 0]
        text = asr.tokenizer.decode(out.sequences[0], skip_special_tokens=True).strip()
        return Transcript(text, no_speech, float(logprobs.mean()) if len(logprobs) else None)

    def unheard(self, t: Transcript) -> str | None:
        """Why ``t`` is not a question (None: it is), with this recogniser's thresholds (:func:`unheard`)."""
        return unheard(t, self.no_speech_prob, self.min_logprob)

    def warm_up(self) -> None:
        """Load the model and run it once on a second of silence: the first call pays for allocating and
        tuning kernels (a second or more on the CPU), which must not fall on the user's first question."""
        self.load()
        if not self._warm:
            self.recognise(np.zeros(SAMPLING_RATE, dtype=np.float32))
            self._warm = True

    def _is_whisper(self) -> bool:
        return getattr(self._pipeline.model.config, "model_type", "") == "whisper"

    def unload(self) -> None:
        """Drop the pipeline and hand its GPU memory back (switching models in the settings)."""
        with self._lock:
            self._pipeline = None
            self._generate_kwargs = {}
            self._warm = False
        from model.device import free_cuda_memory

        free_cuda_memory()
