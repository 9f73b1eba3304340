"""`streamo-live voice ...`: diagnostics of voice input and output.

streamo-live voice devices                         # microphones and speakers PortAudio sees
streamo-live voice segment FILE.wav [--json]       # where the speech is (start and end, seconds)
streamo-live voice say TEXT --to OUT.wav           # the answer voice, into a file
streamo-live voice transcribe FILE.wav --asr-model ID|PATH|demo [--language en]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from app.errors import CliError


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    voice = sub.add_parser("voice", help="voice diagnostics: devices, segment, say, transcribe")
    vs = voice.add_subparsers(dest="voice_command", metavar="{devices,segment,say,transcribe}")
    voice.set_defaults(func=lambda args: _missing(voice))

    d = vs.add_parser("devices", help="list the microphones and speakers PortAudio sees", formatter_class=fmt)
    d.set_defaults(func=run_devices)

    s = vs.add_parser("segment", help="find the utterances in a recording (voice activity)", formatter_class=fmt)
    s.add_argument("file", help="an audio file (WAV, FLAC, OGG, MP3)")
    s.add_argument("--json", action="store_true", help="one JSON list instead of lines")
    s.add_argument("--threshold", type=float, default=0.5, help="speech probability that starts speech")
    s.add_argument(
        "--min-silence-ms", type=int, default=None, help="silence that ends an utterance (default: the app's hangover)"
    )
    s.set_defaults(func=run_segment)

    y = vs.add_parser("say", help="speak TEXT with the answer voice into a WAV file", formatter_class=fmt)
    y.add_argument("text")
    y.add_argument("--to", required=True, metavar="OUT.wav")
    y.add_argument("--voice", default=None, help="a voice id or name (see Voice > Voice settings)")
    y.add_argument("--rate", type=int, default=None, help="words per minute")
    y.set_defaults(func=run_say)

    t = vs.add_parser("transcribe", help="recognise the speech in a WAV file", formatter_class=fmt)
    t.add_argument("file", help="a WAV file")
    t.add_argument("--asr-model", default=None, help="Whisper id, folder or 'demo' (default: by memory)")
    t.add_argument("--language", default=None, help="language (default: detected)")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda")
    t.set_defaults(func=run_transcribe)


def _missing(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    raise CliError("choose a voice command: devices, segment, say or transcribe")


def run_devices(args: argparse.Namespace) -> int:
    from app.voice.audio import list_input_devices

    try:
        import sounddevice as sd
    except OSError as e:
        raise CliError(f"PortAudio could not be loaded ({e}); install libportaudio2") from None
    inputs = list_input_devices(sd)
    outputs = [d for d in sd.query_devices() if d.get("max_output_channels", 0) > 0]
    if not inputs and not outputs:
        print("No audio devices found: PortAudio sees no microphone or speaker on this computer.")
        return 0
    print("Microphones:" if inputs else "Microphones: none")
    for d in inputs:
        print(f"  {d.label}")
    print("Speakers:" if outputs else "Speakers: none")
    for d in outputs:
        print(f"  [{d['index']}] {d['name']} ({int(d['default_samplerate'])} Hz)")
    return 0


def _voice_error(fn):  # noqa: ANN001, ANN202 - a decorator for the subcommands
    def wrapped(args: argparse.Namespace) -> int:
        from app.voice import VoiceError

        try:
            return fn(args)
        except VoiceError as e:
            raise CliError(str(e)) from None

    return wrapped


@_voice_error
def run_segment(args: argparse.Namespace) -> int:
    from app.voice.vad import VadSettings, segment
    from app.voice.wav import open_audio

    settings = VadSettings(threshold=args.threshold)
    if args.min_silence_ms is not None:
        settings = dataclasses.replace(settings, min_silence_ms=args.min_silence_ms)
    with open_audio(args.file) as f:  # in blocks: an hour-long recording stays in bounded memory
        utterances = segment(f.blocks(), f.rate, settings)
    if args.json:
        print(json.dumps([{"start": round(u.start, 3), "end": round(u.end, 3)} for u in utterances]))
    else:
        for u in utterances:
            print(f"{u.start:.2f} {u.end:.2f}")
        if not utterances:
            print(f"no speech found in {args.file}", file=sys.stderr)
    return 0


@_voice_error
def run_say(args: argparse.Namespace) -> int:
    from app.voice.synth import synthesize
    from app.voice.wav import write_wav

    if not args.text.strip():
        raise CliError("nothing to say: TEXT is empty")
    from model.outputs import OutputRefused, check_output

    try:  # before synthesis: never a device (as root, `--to /dev/full` replaced the device with a file), a folder
        target = check_output(args.to, "--to")  # or a model's file; writable, with room
    except OutputRefused as e:
        raise CliError(str(e)) from None
    samples, rate = synthesize(args.text, voice=args.voice, rate=args.rate)  # returns once all of it is written
    write_wav(target, samples, rate)  # a symlink's target, atomically (the link stays)
    out = Path(args.to)
    print(f"wrote {out} ({len(samples) / rate:.2f} s)", file=sys.stderr)
    return 0


@_voice_error
def run_transcribe(args: argparse.Namespace) -> int:
    from app.voice.asr import Recognizer, default_asr_model
    from app.voice.audio import resample
    from app.voice.wav import read_wav

    samples, rate = read_wav(args.file)
    recognizer = Recognizer(args.asr_model or default_asr_model(), device=args.device, language=args.language)
    print(recognizer.transcribe(resample(samples, rate, 16000)))
    return 0
