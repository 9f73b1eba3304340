"""The engine's KV cache: preallocated per-layer buffers written by position.

Why not transformers' DynamicCache: it concatenates every step (a copy of the whole context
per layer per second and a new allocation each time) and can only crop from the end. Why not
its StaticCache: attention then always runs over the full capacity behind a mask. Here each
layer owns one [1, kv_heads, capacity, head_dim] buffer; a forward writes its new keys at
[length, length + q) and attention reads the view [:length + q], so compute follows the
context and memory stays flat once the window is full. The buffer grows (by copy) only until
the window's largest context has been seen.

It subclasses transformers' ``Cache`` so the model's attention layers call ``update`` on it
unchanged; the engine passes positions itself, and transformers sizes the attention mask from
``get_mask_sizes`` (everything cached plus the new tokens), so the cache needs no position
bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.hf_compat import Cache, CacheLayerMixin


@dataclass(frozen=True)
class CacheSnapshot:
    """A copy of a StreamKVCache's filled part (``StreamKVCache.snapshot``); restorable any number of times."""

    length: int
    ids: tuple[int, ...]
    layers: tuple[tuple[torch.Tensor, torch.Tensor] | None, ...]  # per layer: keys, values [1, kv_heads, length, d]


class SlotLayer(CacheLayerMixin):
    is_sliding = False
    is_compileable = False
    is_croppable = True

    def __init__(self, owner: StreamKVCache) -> None:
        super().__init__()
        self.owner = owner

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        b, h, _, d = key_states.shape
        cap = self.owner.capacity
        self.keys = key_states.new_zeros(b, h, cap, d)  # [1, kv_heads, capacity, head_dim]
        self.values = value_states.new_zeros(b, h, cap, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, q = self.owner.length, key_states.shape[-2]
        if n + q > self.keys.shape[-2]:
            self.grow(n + q)
        self.keys[:, :, n : n + q] = key_states  # written by position, no concatenation
        self.values[:, :, n : n + q] = value_states
        return self.keys[:, :, : n + q], self.values[:, :, : n + q]

    def grow(self, needed: int) -> None:
        cap = max(needed, int(self.keys.shape[-2] * 1.5) + 64)
        self.owner.capacity = max(self.owner.capacity, cap)
        for name in ("keys", "values"):
            old = getattr(self, name)
            new = old.new_zeros(*old.shape[:2], cap, old.shape[-1])
            new[:, :, : self.owner.length] = old[:, :, : self.owner.length]
            setattr(self, name, new)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.owner.length

    def get_max_length(self) -> int:
        return -1

    def crop(self, tokens_to_remove: int) -> None:
        """Layers share the owner's length: StreamKVCache.crop truncates once for all of them."""

    def reset(self) -> None:
        self.keys = self.values = None
        self.is_initialized = False


class StreamKVCache(Cache):
    """Per-layer slot buffers plus the token ids they hold (for checks and rebuilds).

    ``length`` is the number of cached tokens; a forward writes after it and the engine calls
    ``advance(q)`` once the forward is done, so every layer sees the same offset.
    """

    def __init__(self, num_layers: int, capacity: int = 1024) -> None:
        self.length = 0
        self.capacity = capacity
        super().__init__(layers=[SlotLayer(self) for _ in range(num_layers)])
        self.ids: list[int] = []  # the token id at each cached position

    def advance(self, ids: list[int]) -> None:
        self.length += len(ids)
        self.ids.extend(ids)

    def truncate(self, length: int) -> None:
        """Forget everything from ``length`` on (the buffers keep their size)."""
        self.length = length
        del self.ids[length:]

    def clear(self) -> None:
        self.truncate(0)

    def crop(self, tokens_to_remove: int) -> None:
        """transformers' convention: a negative count removes that many tokens from the end."""
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        self.truncate(self.length + tokens_to_remove)

    def remove(self, start: int, end: int, key_shift: int = 0, inv_freq: torch.Tensor | None = None) -> None:
        """Drop cached tokens [start, end) and move the rest down, in place (evict mode).

        With ``key_shift`` the moved keys are re-rotated by that many positions, so the kept
        tokens sit right after ``start``'s position instead of leaving a gap in positions.
        """
        from model.rope import rotate_keys

        n, gap = self.length, end - start
        for layer in self.layers:
            if not layer.is_initialized:
                continue
            for buf in (layer.keys, layer.values):
                buf[:, :, start : n - gap] = buf[:, :, end:n].clone()  # overlapping move
            if key_shift and inv_freq is not None:
                rotate_keys(layer.keys[:, :, start : n - gap], key_shift, inv_freq)
        del self.ids[start:end]
        self.length = n - gap

    def snapshot(self) -> CacheSnapshot:
        """Copy the filled part of every layer (O(context) memory and time: a copy, not a view,
        because a later rebuild or evict rewrites the buffers in place)."""
        n = self.length
        layers = tuple(
            (layer.keys[:, :, :n].clone(), layer.values[:, :, :n].clone()) if layer.is_initialized else None
            for layer in self.layers
        )
        return CacheSnapshot(n, tuple(self.ids), layers)

    def restore(self, snap: CacheSnapshot) -> None:
        """Put a snapshot back: the filled part is copied into the current buffers (grown or
        allocated as needed); what lies past ``length`` is never read, so it is left as it is."""
        n = snap.length
        self.capacity = max(self.capacity, n)
        for layer, saved in zip(self.layers, snap.layers, strict=True):
            if saved is None:
                continue
            keys, values = saved
            if not layer.is_initialized:
                layer.lazy_initialization(keys, values)
            self.length = 0  # grow() copies only [:length]: nothing of the current content is needed
            if layer.keys.shape[-2] < n:
                layer.grow(n)
            layer.keys[:, :, :n] = keys
            layer.values[:, :, :n] = values
        self.length = n
        self.ids = list(snap.ids)

    def nbytes(self) -> int:
        return sum(layer.keys.numel() * layer.keys.element_size() * 2 for layer in self.layers if layer.is_initialized)
