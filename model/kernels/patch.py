"""Swap the language model's modules onto the Triton kernels, driven by a table of module types; reversible.

How a swap works: the module instance keeps its parameters, buffers, hooks and state_dict keys; only its
`__class__` is replaced by a generated subclass of the original class whose `forward` tries the kernel and falls
back to the original class's forward for any call the kernel cannot take (device, dtype, too many tokens,
autograd). `revert_kernels` puts every swapped instance back on its original class, so the model is exactly what
it was (the kernels never write to parameters).

Table (`SWAP_TABLE`), matched on the exact class of each module under the language model (not the vision tower):
    bitsandbytes.nn.Linear4bit (nf4)        -> NF4 matvec (1 token) / tiled matmul (2..512 tokens)
    Qwen2_5_VLRMSNorm / Qwen2RMSNorm        -> fused RMSNorm
    Qwen2_5_VLDecoderLayer                  -> residual add fused into post_attention_layernorm
    Qwen2MLP (hidden_act silu)              -> fused SiLU*mul between the (swapped) projections
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from model.hf_compat import decoder_layer_unsupported, qwen_classes

from ._util import HAS_TRITON, interpreter_active, triton_import_error

_ORIG_ATTR = "_streamo_kernel_orig_class"
_KIND_ATTR = "_streamo_kernel_kind"

# Calls per (kind, "triton" | "fallback"); cheap, lets tests and the status bar see which path really ran.
KERNEL_CALLS: collections.Counter[tuple[str, str]] = collections.Counter()


@dataclass
class KernelReport:
    path: str  # "triton (...)" | "torch" | "off"
    swapped: dict[str, int] = field(default_factory=dict)  # module type name -> count swapped
    skipped: list[str] = field(default_factory=list)  # "layer.name: reason"
    reason: str = ""  # why the path is not "triton", or which device it runs on

    def summary(self) -> str:
        """One line for the status bar / logs."""
        n = sum(self.swapped.values())
        extra = f", {len(self.skipped)} kept on fallback" if self.skipped else ""
        return (
            f"kernels: {self.path}"
            + (f" [{n} modules{extra}]" if n else "")
            + (f" - {self.reason}" if self.reason else "")
        )


@dataclass(frozen=True)
class SwapRule:
    kind: str  # short kernel label for the report
    resolve: Callable[[], list[type]]  # the classes this rule matches (lazy: optional packages)
    check: Callable[[nn.Module], str | None]  # None when the module can be swapped, else why not
    forward: Callable[..., torch.Tensor | None]  # kernel forward(module, *args, **kwargs); None -> fall back


# --------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------
def _linear4bit_classes() -> list[type]:
    try:
        import bitsandbytes as bnb
    except Exception:
        return []
    return [bnb.nn.Linear4bit, bnb.nn.LinearNF4]


def _check_linear4bit(m: nn.Module) -> str | None:
    from .nf4 import linear4bit_unsupported_reason

    if getattr(m, "_hf_hook", None) is not None:
        return "accelerate hook on the module (offloaded?)"
    return linear4bit_unsupported_reason(m)


def _fwd_linear4bit(m: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    from .nf4 import linear4bit_triton_forward

    return linear4bit_triton_forward(m, x)


def _check_rmsnorm(m: nn.Module) -> str | None:
    w = getattr(m, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 1 or not hasattr(m, "variance_epsilon"):
        return "not an HF RMSNorm (weight, variance_epsilon)"
    if w.shape[0] > 65536:
        return f"row of {w.shape[0]} too long"
    return None


def _fwd_rmsnorm(m: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor | None:
    from .rmsnorm import rmsnorm_module_forward

    return rmsnorm_module_forward(m, hidden_states)


def _check_mlp(m: nn.Module) -> str | None:
    act = getattr(getattr(m, "config", None), "hidden_act", None)
    if act not in ("silu", "swish"):
        return f"hidden_act {act!r} (fused kernel is SiLU)"
    if not all(hasattr(m, n) for n in ("gate_proj", "up_proj", "down_proj")):
        return "no gate/up/down projections"
    return None


def _fwd_mlp(m: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    from .silu_mul import qwen2_mlp_forward

    return qwen2_mlp_forward(m, x)


# The decoder-layer forward below is transformers 5.x's Qwen2_5_VLDecoderLayer.forward with the second residual add
# fused into post_attention_layernorm. It is only swapped in for a forward signature it follows
# (model/hf_compat.DECODER_LAYER_SIGNATURES: the KV cache is `past_key_values` before 5.24 and `cache` from 5.24 on;
# it travels through **kwargs under the installed name); any other version keeps its own forward.


def _check_decoder(m: nn.Module) -> str | None:
    why = decoder_layer_unsupported(type(m))
    if why is not None:
        return why
    norm = getattr(m, "post_attention_layernorm", None)
    if norm is None or _check_rmsnorm(norm) is not None:
        return "post_attention_layernorm is not an HF RMSNorm"
    for n in ("input_layernorm", "self_attn", "mlp"):
        if not hasattr(m, n):
            return f"no {n}"
    return None


def _fwd_decoder(
    m: nn.Module,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.LongTensor | None = None,
    use_cache: bool | None = False,
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
    **kwargs,  # the KV cache (`cache` or `past_key_values`, as the installed version names it) and the rest
) -> torch.Tensor:
    from ._util import can_launch
    from .rmsnorm import _rms_norm_kernel, rms_norm

    residual = hidden_states
    hidden_states = m.input_layernorm(hidden_states)
    hidden_states, _ = m.self_attn(
        hidden_states=hidden_states,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=use_cache,
        position_embeddings=position_embeddings,
        **kwargs,
    )
    norm = m.post_attention_layernorm
    if (
        can_launch(_rms_norm_kernel, hidden_states, residual, norm.weight)
        and hidden_states.shape == residual.shape
        and hidden_states.dtype == residual.dtype
        and not (torch.is_grad_enabled() and (hidden_states.requires_grad or norm.weight.requires_grad))
    ):
        KERNEL_CALLS[("add+rmsnorm", "triton")] += 1
        hidden_states, residual = rms_norm(hidden_states, norm.weight, norm.variance_epsilon, residual=residual)
    else:
        KERNEL_CALLS[("add+rmsnorm", "fallback")] += 1
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = norm(hidden_states)
    hidden_states = m.mlp(hidden_states)
    return residual + hidden_states


SWAP_TABLE: list[SwapRule] = [
    SwapRule("NF4 matvec/matmul", _linear4bit_classes, _check_linear4bit, _fwd_linear4bit),
    SwapRule("RMSNorm", lambda: qwen_classes("Qwen2_5_VLRMSNorm", "Qwen2RMSNorm"), _check_rmsnorm, _fwd_rmsnorm),
    SwapRule("add+RMSNorm", lambda: qwen_classes("Qwen2_5_VLDecoderLayer"), _check_decoder, None),  # own forward
    SwapRule("SiLU*mul", lambda: qwen_classes("Qwen2MLP"), _check_mlp, _fwd_mlp),
]


# --------------------------------------------------------------------------------------------------
# Class swapping
# --------------------------------------------------------------------------------------------------
_SUBCLASS_CACHE: dict[tuple[type, str], type] = {}


def _swapped_class(orig: type, rule: SwapRule) -> type:
    key = (orig, rule.kind)
    cls = _SUBCLASS_CACHE.get(key)
    if cls is not None:
        return cls
    if rule.forward is None:  # the decoder layer: the fused forward is the whole forward

        def forward(self, *args, **kwargs):
            return _fwd_decoder(self, *args, **kwargs)

    else:
        kernel_fwd = rule.forward
        kind = rule.kind

        def forward(self, *args, **kwargs):
            # the kernels take the plain one-tensor call; anything else (extra args from a wrapper) -> original
            y = kernel_fwd(self, args[0]) if len(args) == 1 and not kwargs and torch.is_tensor(args[0]) else None
            if y is None:
                KERNEL_CALLS[(kind, "fallback")] += 1
                return orig.forward(self, *args, **kwargs)
            KERNEL_CALLS[(kind, "triton")] += 1
            return y

    forward.__doc__ = f"Triton '{rule.kind}' forward; falls back to {orig.__qualname__}.forward."
    cls = type(f"Triton{orig.__name__}", (orig,), {"forward": forward, _ORIG_ATTR: orig, _KIND_ATTR: rule.kind})
    cls.__module__ = __name__
    _SUBCLASS_CACHE[key] = cls
    return cls


def _is_swapped(m: nn.Module) -> bool:
    return _ORIG_ATTR in type(m).__dict__


_VISION_NAMES = ("visual", "vision_tower", "vision_model", "vision")


def _language_model_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of the language model's subtree; the vision tower and the LM head are left alone."""
    for name, mod in model.named_modules():
        if name.split(".")[-1] == "language_model":
            return [(f"{name}.{n}" if n else name, m) for n, m in mod.named_modules()]
    out = []
    for name, mod in model.named_modules():
        parts = name.split(".")
        if any(p in _VISION_NAMES for p in parts) or parts[-1] == "lm_head":
            continue
        out.append((name, mod))
    return out


def _module_device(m: nn.Module) -> torch.device | None:
    for p in m.parameters(recurse=False):
        return p.device
    for p in m.parameters():
        return p.device
    return None


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------
def kernels_available() -> tuple[bool, str]:
    """(ok, reason): whether the compiled Triton path can run in this process."""
    if not HAS_TRITON:
        return False, f"triton not importable ({triton_import_error()})"
    if not torch.cuda.is_available():
        if interpreter_active():
            return False, "no CUDA device (Triton interpreter active: tests only)"
        return False, "no CUDA device"
    major, minor = torch.cuda.get_device_capability()
    name = torch.cuda.get_device_name()
    if (major, minor) < (7, 5):
        return False, f"{name} (sm_{major}{minor}) is older than Triton's minimum sm_75"
    import triton

    return True, f"{name} (sm_{major}{minor}), triton {triton.__version__}"


def revert_kernels(model: nn.Module) -> None:
    """Put every swapped module back on its original class (parameters were never touched)."""
    for m in model.modules():
        if _is_swapped(m):
            m.__class__ = type(m).__dict__[_ORIG_ATTR]


def apply_kernels(model: nn.Module, mode: str = "triton", *, allow_cpu_interpreter: bool = False) -> KernelReport:
    """Swap the language model's supported modules onto the Triton kernels (mode "triton", or "auto" - the same)
    or undo it ("off").

    Refuses (path "torch", nothing swapped) without a CUDA device unless `allow_cpu_interpreter` and
    TRITON_INTERPRET=1 (tests). Modules on another device than CUDA, or with unsupported shapes/storage, stay as
    they are and are listed in `skipped`. Calling it again re-applies from scratch."""
    mode = (mode or "off").lower()
    mode = "triton" if mode == "auto" else mode
    if mode not in ("triton", "off"):
        raise ValueError(f"kernels mode must be 'triton', 'auto' or 'off', got {mode!r}")
    revert_kernels(model)
    if mode == "off":
        return KernelReport(path="off", reason="disabled (--kernels off)")

    ok, why = kernels_available()
    cpu_ok = allow_cpu_interpreter and interpreter_active() and HAS_TRITON
    if not ok and not cpu_ok:
        return KernelReport(path="torch", skipped=[f"model: {why}"], reason=why)

    rules: list[tuple[type, SwapRule]] = []
    for rule in SWAP_TABLE:
        rules += [(cls, rule) for cls in rule.resolve()]
    by_class = {cls: rule for cls, rule in reversed(rules)}  # first rule wins

    swapped: collections.Counter[str] = collections.Counter()
    kinds: list[str] = []
    skipped: list[str] = []
    for name, m in _language_model_modules(model):
        rule = by_class.get(type(m))  # exact class: subclasses (e.g. peft wrappers) are not assumed compatible
        if rule is None:
            continue
        dev = _module_device(m)
        if dev is not None and dev.type != "cuda" and not (cpu_ok and dev.type == "cpu"):
            skipped.append(f"{name}: on {dev}")
            continue
        reason = rule.check(m)
        if reason is not None:
            skipped.append(f"{name}: {reason}")
            continue
        orig = type(m)
        m.__class__ = _swapped_class(orig, rule)
        swapped[orig.__name__] += 1
        if rule.kind not in kinds:
            kinds.append(rule.kind)

    if not swapped:
        return KernelReport(path="torch", skipped=skipped, reason="no module matched the kernel table")
    where = "Triton interpreter (CPU)" if not ok else why
    return KernelReport(path=f"triton ({', '.join(kinds)})", swapped=dict(swapped), skipped=skipped, reason=where)


def kernel_call_counts() -> dict[str, int]:
    """{'<kind>/<triton|fallback>': calls} since the last reset."""
    return {f"{k}/{p}": n for (k, p), n in sorted(KERNEL_CALLS.items())}


def reset_kernel_call_counts() -> None:
    KERNEL_CALLS.clear()
