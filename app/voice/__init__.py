"""Voice input and output around the live runtime.

The path of a spoken question: a microphone (``audio.py``: a PortAudio input stream whose callback only
copies into a ring buffer, resampled to 16 kHz mono in the consumer) -> voice activity (``vad.py``: Silero VAD
cutting the stream into utterances, hands-free or push-to-talk) -> speech recognition -> a ``Question`` for
the live runner. Answers can be spoken back (speech out). ``wav.py`` reads and writes WAV files without
third-party audio libraries, so tests and the ``voice`` commands can feed recordings through the same code.

Nothing here imports Qt; torch is imported only when the VAD model is first needed.
"""

from __future__ import annotations

__all__ = ["VoiceError"]


class VoiceError(Exception):
    """A microphone, speech engine, recognizer or audio file problem; the message names the device or file and
    what to do, so front ends can show it as it is."""
