"""Loading a Qwen2.5-VL (or Qwen3-VL) checkpoint for Streamo: precision, state tokens, adapter.

``load_model`` takes a Hugging Face id, a local folder or ``"demo"`` and returns a LoadedModel.
Everything that can go wrong with user input (a missing folder, no weights, a truncated
safetensors file, an unsupported architecture, a broken adapter, no GPU for 4-bit) raises a
ModelLoadError naming the path and what to do.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model import json_text
from model import protocol as P
from model.catalog import DEFAULT_3B, DEFAULT_7B, DEMO_MAX_PIXELS, DEMO_MODEL, PRECISIONS, SUPPORTED_MODEL_TYPES
from model.device import KERNEL_MODES, free_cuda_memory, is_out_of_memory, resolve_device
from model.errors import ModelLoadError
from model.frames import MAX_PIXELS, MIN_PIXELS
from model.hub import ProgressFn, download_model
from model.paths import build_once, data_dir
from model.real_shapes import build_random_model, random_weights_marker

log = logging.getLogger(__name__)


def default_model_id(free_gpu_bytes: int | None = None) -> str:
    """7B in 4-bit where the GPU has about 10 GB free, 3B otherwise (and on CPU)."""
    if free_gpu_bytes is None and torch.cuda.is_available():
        free_gpu_bytes, _ = torch.cuda.mem_get_info()
    return DEFAULT_7B if (free_gpu_bytes or 0) >= 10 * 1024**3 else DEFAULT_3B


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel (possibly wrapped by peft)
    processor: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype  # compute dtype
    precision: str  # what actually runs: 4bit | 8bit | bf16 | fp16 | fp32
    source: str  # the id or folder it came from
    path: Path  # the local folder
    model_type: str
    state_token_ids: dict[str, int]
    added_state_tokens: list[str] = field(default_factory=list)
    adapter: Path | None = None
    kernel_path: str = "torch"
    kernels_off: list[str] = field(default_factory=list)  # kernels that failed their self-check on this GPU
    is_demo: bool = False
    trainable: bool = False
    min_pixels: int = MIN_PIXELS  # the frame pixel budget the processor resizes to
    max_pixels: int = MAX_PIXELS
    warnings: list[str] = field(default_factory=list)

    @property
    def state_ids(self) -> list[int]:
        """Ids in protocol order: Silence, Standby, Response."""
        return [self.state_token_ids[t] for t in P.STATE_TOKENS]


# ---------------------------------------------------------------------------------------------
# Checking a folder before transformers sees it (its own errors rarely name the file)


def check_safetensors(path: Path) -> None:
    """Raise ModelLoadError (one line naming the file) if the file's header is unreadable or not a table of
    tensors, names a data type, shape or offset the format does not allow, or the data is cut short."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("shorter than its 8-byte header")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100 * 1024**2:
                raise ValueError(f"header length {n} exceeds the file size {size}")
            header = json_text.loads(f.read(n))
        if not isinstance(header, dict):  # a list raised AttributeError
            raise ValueError(f"its header is a JSON {type(header).__name__}, not a table of tensors")
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        bad = next((k for k, v in tensors.items() if not _offsets(v)), None)
        if bad is not None:
            raise ValueError(f"tensor {bad!r} has no valid data_offsets")
    except (ValueError, UnicodeDecodeError) as e:
        raise _not_safetensors(path, e) from None
    end = max((_offsets(v)[1] for v in tensors.values()), default=0)
    if 8 + n + end > size:
        raise ModelLoadError(
            f"{path}: truncated safetensors file ({size} bytes, its header promises {8 + n + end}). "
            "Delete it and download the model again."
        )
    from safetensors import SafetensorError, safe_open

    try:  # the rest as the reader checks it: data types, shapes against offsets (it raised a SafetensorError)
        with safe_open(str(path), framework="np"):
            pass
    except (SafetensorError, OSError) as e:
        raise _not_safetensors(path, e) from None


def _offsets(entry: object) -> tuple[int, int] | None:
    """A header entry's ``data_offsets`` as (begin, end), or None when they are not two whole numbers."""
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int and o >= 0 for o in offsets):
        return None
    return offsets[0], offsets[1]


def _not_safetensors(path: Path, error: Exception) -> ModelLoadError:
    why = " ".join(str(error).split()).split(", expected one of")[0]  # one line, without the reader's long lists
    why = why if len(why) <= 200 else why[:199] + "\u2026"
    return ModelLoadError(
        f"{path}: not a valid safetensors file ({why}). The download may be incomplete: delete the file and "
        "download the model again."
    )


TOKENIZER_FILES = ("tokenizer.json", "vocab.json")  # the fast tokenizer, or the slow one's vocabulary


def check_tokenizer(path: Path, tokenizer: Any) -> None:
    """The tokenizer knows the chat's special tokens (``<|im_start|>``, ``<|image_pad|>``, ...): a folder
    whose tokenizer files are missing loaded an empty tokenizer, and the first step failed with
    "5 is not in list"."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in P.CHAT_SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ModelLoadError(
            f"{path}: its tokenizer lacks the chat tokens {', '.join(missing)} (a tokenizer of another model, or "
            "tokenizer.json missing); download the model again."
        )


def check_model_folder(path: Path, need_weights: bool = True) -> str:
    """Validate a local checkpoint folder; returns its model_type. ``need_weights=False``: a folder of
    random weights (model/real_shapes.py) has none to check."""
    if not path.exists():
        raise ModelLoadError(f"model folder {path} does not exist. Pick an existing folder or a Hugging Face id.")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is a file; a model is a folder with config.json and *.safetensors.")
    config = path / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"{path} has no config.json; it is not a Hugging Face model folder.")
    try:
        settings = json_text.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{config}: unreadable JSON ({e}).") from None
    if not isinstance(settings, dict):  # a list or a number is no configuration (it raised AttributeError)
        raise ModelLoadError(
            f"{config} holds a JSON {type(settings).__name__}, not a model's settings; download it again."
        )
    model_type = settings.get("model_type", "")
    if model_type not in SUPPORTED_MODEL_TYPES or not _transformers_has(model_type):
        names = ", ".join(f"{v} ({k})" for k, v in SUPPORTED_MODEL_TYPES.items() if _transformers_has(k))
        raise ModelLoadError(
            f"{path}: unsupported architecture '{model_type or 'unknown'}'. Streamo Live runs {names} checkpoints."
        )
    # No weights first (the folder is not a model at all), then the tokenizer, then each file's header.
    weights = sorted(path.glob("*.safetensors")) if need_weights else []
    if need_weights and not weights:
        legacy = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt*")]
        hint = f" It has {', '.join(legacy[:3])}: only safetensors weights are loaded (no pickles)." if legacy else ""
        raise ModelLoadError(f"{path} has no *.safetensors weights.{hint}")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"{path} has no tokenizer ({' or '.join(TOKENIZER_FILES)}); download the model again, or copy its "
            "tokenizer files into the folder."
        )
    for w in weights:
        check_safetensors(w)
    return model_type


def _transformers_has(model_type: str) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return model_type in CONFIG_MAPPING_NAMES


# ---------------------------------------------------------------------------------------------
# State tokens


def ensure_state_tokens(model: Any, tokenizer: Any) -> list[str]:
    """Add the three state tokens when missing and initialise their embedding and lm_head rows
    from the mean of the rows of the plain-text pieces of Silence / Standby / Response.

    Qwen2.5-VL's embedding has spare rows beyond its tokenizer, so new ids usually land there
    without a resize. Returns the tokens that were added.
    """
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    missing = [t for t in P.STATE_TOKENS if t not in vocab]
    if not missing:
        return []
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
    emb = model.get_input_embeddings()
    if len(tokenizer) > emb.weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        emb = model.get_input_embeddings()
    heads = [emb.weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != emb.weight.data_ptr():
        heads.append(out.weight)
    with torch.no_grad():
        for token in missing:
            new_id = tokenizer.convert_tokens_to_ids(token)
            pieces = tokenizer(P.STATE_TOKEN_WORDS[token], add_special_tokens=False)["input_ids"]
            for w in heads:
                w[new_id] = w[pieces].float().mean(0).to(w.dtype)
    return missing


def state_token_ids(tokenizer: Any) -> dict[str, int]:
    ids = {}
    for t in P.STATE_TOKENS:
        enc = tokenizer(t, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise ModelLoadError(f"the tokenizer splits the state token {t} into {len(enc)} pieces")
        ids[t] = enc[0]
    return ids


# ---------------------------------------------------------------------------------------------
# Loading


def _check_complete(path: Path | str, info: dict[str, Any]) -> None:
    """Weights complete or refused: transformers fills a tensor the checkpoint lacks (or holds in another
    shape) with random numbers and only logs it; a model half random answers nonsense without an error."""
    missing = list(info.get("missing_keys") or [])
    mismatched = [str(m[0]) if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys") or []]
    if missing or mismatched:
        what = []
        if missing:
            what.append(f"{len(missing)} weight(s) missing (e.g. {', '.join(missing[:3])})")
        if mismatched:
            what.append(f"{len(mismatched)} of another shape (e.g. {', '.join(mismatched[:3])})")
        raise ModelLoadError(
            f"the weights in {path} are incomplete: {'; '.join(what)}. The download or copy was cut short, or the "
            "files belong to another model: download it again."
        )


def resolve_precision(precision: str, device: torch.device, warnings: list[str], cpu_4bit: bool = False) -> str:
    """What runs: on CUDA 4-bit unless asked otherwise; on the CPU fp32 (or bf16). ``cpu_4bit``
    keeps an explicit 4bit on the CPU (bitsandbytes' CPU backend: slow, used to test QLoRA)."""
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if device.type == "cpu":
        if precision == "4bit" and cpu_4bit:
            return precision
        if precision in ("4bit", "8bit"):
            warnings.append(f"{precision} needs a CUDA GPU; running fp32 on the CPU instead")
            precision = "fp32"
        elif precision == "auto":
            precision = "fp32"
        warnings.append("running on the CPU: expect seconds per step with a real model")
        return precision
    return "4bit" if precision == "auto" else precision


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _quantization(precision: str, compute_dtype: torch.dtype = torch.bfloat16):
    from transformers import BitsAndBytesConfig

    if precision == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=["visual", "lm_head"],  # vision tower and the state rows stay exact
        )
    if precision == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["visual", "lm_head"])
    return None


def demo_checkpoint_dir() -> Path:
    return data_dir() / "demo-model"


def ensure_demo_checkpoint() -> Path:
    """The tiny offline checkpoint, built once into the user's data folder."""
    from model.tiny import build_tiny_checkpoint

    return build_once(demo_checkpoint_dir(), tiny_checkpoint_current, lambda tmp: build_tiny_checkpoint(tmp, seed=0))


def tiny_checkpoint_current(path: Path) -> bool:
    """A built tiny checkpoint whose sizes and init match today's TinySpec (older demo builds are
    rebuilt rather than kept with weights the demo adapter was not trained on)."""
    from dataclasses import asdict

    from model.tiny import TINY_VERSION, TinySpec

    try:
        marker = json.loads((path / "streamo_tiny.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return (
        marker.get("spec") == asdict(TinySpec()) and marker.get("seed") == 0 and marker.get("version") == TINY_VERSION
    )


def resolve_source(source: str | Path, progress: ProgressFn | None = None) -> tuple[Path, bool]:
    """(local folder, is_demo) for a hub id, a folder or 'demo'."""
    s = str(source)
    if s == DEMO_MODEL:
        return ensure_demo_checkpoint(), True
    p = Path(s).expanduser()
    looks_like_id = s.count("/") == 1 and not s.startswith((".", "/", "~")) and not p.exists()
    if looks_like_id:
        return download_model(s, progress=progress), False
    return p, False


def configure_cpu_threads(model: Any) -> int:
    """Intra-op threads for CPU inference, leaving a core to the capture and the UI.

    OpenMP threads that spin-wait collapse when any other thread wants a core: on this project's
    2-core machines the tiny demo model's step took ~600 ms with 2 threads beside one busy
    process and ~15 ms with 1. Small models get one thread; ``STREAMO_LIVE_THREADS`` overrides.
    """
    env = os.environ.get("STREAMO_LIVE_THREADS", "")
    if env.isdigit() and int(env) > 0:
        n = int(env)
    elif sum(p.numel() for p in model.parameters()) < 50_000_000:
        n = 1
    else:
        n = max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(n)
    return n


def merge_trainable_tokens(model: Any) -> int:
    """Write peft's trained token rows (the state tokens' embedding and LM-head rows) into the base
    weights, so code reading ``lm_head.weight`` sees them without peft building a merged copy of the
    whole matrix on every access. Inference only. Returns the number of layers merged."""
    try:
        from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
    except ImportError:
        return 0
    layers = [m for m in model.modules() if isinstance(m, TrainableTokensLayer) and not m.merged]
    for m in layers:
        m.merge()
    return len(layers)


def plain_module(module: Any) -> Any:
    """The module under peft's token wrapper (after ``merge_trainable_tokens`` its weight holds the
    trained rows); any other module as it is."""
    inner = getattr(module, "token_adapter", None)
    return inner.get_base_layer() if inner is not None else module


def load_adapter(model: Any, adapter: Path, trainable: bool = False) -> Any:
    adapter = Path(adapter).expanduser()
    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"adapter folder {adapter} has no adapter_config.json (expected a PEFT LoRA folder)")
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"adapter folder {adapter} has no adapter_model.safetensors")
    check_safetensors(weights)
    from peft import PeftModel

    from model.hf_compat import peft_calls

    try:
        with peft_calls():
            peft_model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    except Exception as e:  # noqa: BLE001 - shape mismatches, wrong base model, bad config
        raise ModelLoadError(f"could not apply the adapter in {adapter}: {e}. Was it trained on this model?") from e
    if not trainable:
        merge_trainable_tokens(peft_model)
    return peft_model


def load_model(
    source: str | Path,
    *,
    precision: str = "auto",
    device: str = "auto",
    adapter: str | Path | None = None,
    kernels: str = "auto",
    progress: ProgressFn | None = None,
    min_pixels: int = MIN_PIXELS,
    max_pixels: int | None = None,
    trainable: bool = False,
) -> LoadedModel:
    """Load a checkpoint ready for the streaming engine, or with ``trainable=True`` for training.

    CUDA: 4-bit NF4 with double quantisation (compute bf16) by default, or 8bit/bf16/fp16.
    CPU: fp32 (or bf16). ``kernels``: one of KERNEL_MODES (see ``apply_kernel_switch``): "auto"
    swaps in our Triton kernels where they apply (CUDA, 4-bit), "triton" too but with a warning
    when they cannot, "off" keeps bitsandbytes/torch.

    ``trainable``: no ``eval()``, an adapter loads with its weights trainable, the Triton kernels
    stay off (they have no backward), an explicit ``precision="4bit"`` stays 4-bit on the CPU too
    (QLoRA through bitsandbytes' CPU backend); the state tokens are added and initialised exactly
    as for inference.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    _check_kernel_mode(kernels)  # before a download, not after
    warnings: list[str] = []
    path, is_demo = resolve_source(source, progress)
    random_weights = random_weights_marker(path) is not None  # real shapes, random weights (bench/gpu_check.py)
    model_type = check_model_folder(path, need_weights=not random_weights)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev, warnings, cpu_4bit=trainable)
    if precision in ("4bit", "8bit"):
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    else:
        dtype = _DTYPES[precision]
    kwargs: dict[str, Any] = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": False}
    quant = _quantization(precision, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
    if dev.type == "cuda":  # load straight onto the GPU, never a full-precision copy in RAM first
        kwargs["device_map"] = {"": dev.index or 0}
    elif quant is not None:
        kwargs["device_map"] = {"": "cpu"}
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
        check_tokenizer(path, processor.tokenizer)
        if random_weights:
            model = build_random_model(path, dtype=dtype, quantization=quant, device=dev)
        else:
            model, info = AutoModelForImageTextToText.from_pretrained(path, output_loading_info=True, **kwargs)
            _check_complete(path, info)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
        if is_out_of_memory(e):
            free_cuda_memory()
            if dev.type == "cuda":
                advice = f"Choose 4-bit, a smaller model ({DEFAULT_3B}), or close other programs using the GPU."
            else:
                advice = f"Choose a smaller model ({DEFAULT_3B}), or close other programs."
            gpu = "GPU " if dev.type == "cuda" else ""
            raise ModelLoadError(f"out of {gpu}memory loading {path} in {precision}: {e}. {advice}") from None
        raise ModelLoadError(f"could not load the model in {path}: {e}") from e
    if dev.type != "cuda" and quant is None:
        model.to(dev)
    if not trainable:
        model.eval()
    if dev.type == "cpu":
        configure_cpu_threads(model)
    for w in warnings:
        log.warning(w)
    tokenizer = processor.tokenizer
    added = ensure_state_tokens(model, tokenizer)
    if added:
        log.info("added state tokens %s, initialised from their words' embeddings", added)
    ids = state_token_ids(tokenizer)
    if max_pixels is None:
        max_pixels = DEMO_MAX_PIXELS if is_demo else MAX_PIXELS
    processor.image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}

    loaded = LoadedModel(
        model=model,
        processor=processor,
        tokenizer=tokenizer,
        device=dev,
        dtype=dtype,
        precision=precision,
        source=str(source),
        path=path,
        model_type=model_type,
        state_token_ids=ids,
        added_state_tokens=added,
        is_demo=is_demo,
        trainable=trainable,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        warnings=warnings,
    )
    if adapter:
        loaded.model = load_adapter(model, Path(adapter), trainable=trainable)
        if not trainable:
            loaded.model.eval()
        loaded.adapter = Path(adapter)
    if trainable and kernels == "triton":
        _kernel_note(loaded, kernels, "they have no backward pass, so training runs without them", _base_path(loaded))
    loaded.kernel_path = apply_kernel_switch(loaded, "off" if trainable else kernels)
    return loaded


def _check_kernel_mode(kernels: str) -> None:
    if kernels not in KERNEL_MODES:
        raise ModelLoadError(f"unknown kernels mode '{kernels}'; choose one of {', '.join(KERNEL_MODES)}")


def _base_path(loaded: LoadedModel) -> str:
    """What runs the layers without our kernels."""
    return "bitsandbytes" if loaded.precision in ("4bit", "8bit") else "torch"


def _kernel_note(loaded: LoadedModel, kernels: str, why: str, path: str) -> None:
    """Why the Triton kernels do not run: a warning the user sees when they asked for them
    ("triton"), a log line otherwise ("auto")."""
    text = f"Triton kernels not used: {why}; running {path}"
    if kernels == "triton":
        loaded.warnings.append(text)
        log.warning(text)
    else:
        log.debug(text)


def apply_kernel_switch(loaded: LoadedModel, kernels: str = "auto") -> str:
    """Swap in the Triton kernels as ``kernels`` (one of KERNEL_MODES) says; returns a label of
    the path that runs ("triton (...)", "bitsandbytes" or "torch").

    "auto" and "triton" swap them in where they apply (a CUDA GPU, a 4-bit model, triton importable
    and the GPU new enough); "auto" leaves out any kernel that failed its self-check on this GPU
    (model/kernels/selfcheck.py: run once per GPU and software stack, cached). Where they cannot, "triton" adds a warning to ``loaded.warnings``
    saying why and "auto" only logs it. "off" never swaps them in.
    """
    _check_kernel_mode(kernels)
    base = _base_path(loaded)
    if kernels == "off":
        return base
    if loaded.device.type != "cuda":
        why = f"they need a CUDA GPU and the model runs on the {loaded.device.type.upper()}"
    elif loaded.precision != "4bit":
        why = f"they apply to 4-bit models and this one runs in {loaded.precision}"
    else:
        try:
            from model.kernels.patch import apply_kernels
        except ImportError as e:  # triton missing on this platform
            why = f"Triton is unavailable ({e})"
        else:
            if kernels == "auto":  # each kernel first checks itself on this GPU (cached); failures stay off
                from model.kernels.selfcheck import apply_checked

                report, check = apply_checked(loaded.model, loaded.device)
                loaded.warnings += check.messages()
                loaded.kernels_off = check.disabled  # the engine's own state-head kernel reads this
            else:
                report = apply_kernels(loaded.model, mode="triton")
            for skipped in report.skipped[:5]:
                log.info("kernel not applied: %s", skipped)
            if report.path.startswith("triton"):
                return report.path
            why = report.reason or "no layer of this model matched them"
    _kernel_note(loaded, kernels, why, base)
    return base
