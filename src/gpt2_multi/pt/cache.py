"""The PyTorch key/value cache: the one cache write, and HF's ``Cache`` objects.

:func:`write_cache` is where every path (the model's forward, :mod:`gpt2_multi.pt.generation`'s decode
steps, the compiled step) adds a call's keys and values to a layer's cache. The classes give HF 4.57's public
cache interface, which generic HF code relies on:

==========================================  ===================================================================
``cache.get_seq_length(layer_idx=0)``       tokens cached so far
``cache.update(k, v, layer_idx, kwargs)``   add this call's keys / values (B, H, T, D); returns the layer's keys
                                            and values to attend to
``cache.layers``                            per layer an object with ``keys`` / ``values`` (B, H, S, D)
``cache.to_legacy_cache()``                 the tuple of ``(key, value)`` per layer (HF's "legacy" format)
``DynamicCache.from_legacy_cache(past)``    the inverse
``cache.reorder_cache(beam_idx)``           keep / repeat batch rows (beam search)
``cache[i]``, ``iter(cache)``, ``len``      the legacy ``(key, value)`` pairs, as HF's caches index
==========================================  ===================================================================

* :class:`DynamicCache` grows by concatenation (HF's default, and what a model returns when it was given
  no cache);
* :class:`StaticCache` preallocates ``max_cache_len`` slots and writes in place at ``cache_position``
  (what ``generate()``'s fast path uses). It takes HF 4.57's ``StaticCache(config, max_cache_len)`` (the batch
  is allocated on the first update) and HF 4.4x's ``StaticCache(config, max_batch_size, max_cache_len)``.

The models accept a legacy tuple, one of these, or any object with ``update`` / ``get_seq_length`` whose
``update`` returns the layer's keys and values *so far* (HF transformers' own ``DynamicCache`` does, and is
tested; HF's ``StaticCache`` returns all ``max_cache_len`` slots and relies on HF's own masking, so it is not
accepted here: use ours). They return the kind they were given (a cache object is updated in place).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

KV = tuple[torch.Tensor, torch.Tensor]


def write_cache(
    past: KV | LayerSlot | None,
    key: torch.Tensor,
    value: torch.Tensor,
    index: int | torch.Tensor | None = None,
    length: int | None = None,
) -> KV:
    """Add this call's keys and values (B, H, T, D) to a layer's cache; returns the keys and values to attend to.

    * growing cache (``index`` None): ``past`` None or (key, value) each (B, H, P, D) -> the concatenation
      (B, H, P + T, D), HF's tuple cache.
    * a cache object (``past`` a :class:`LayerSlot`): its ``update`` stores them and returns what to attend to.
    * preallocated cache (``index`` given): ``past`` the layer's (key, value) buffers (B, H, S_max, D),
      written in place at slots [index, index + T): an int is a slice write, a (T,) long tensor an
      ``index_copy_`` (the position stays a tensor: one ``torch.compile`` graph for every step).
      Returns the first ``length`` slots (None: every slot; the caller masks the unwritten ones).
    """
    if isinstance(past, LayerSlot):  # a cache object (ours, or anything with HF's interface) stores it itself
        return past.cache.update(key, value, past.layer_idx, past.cache_kwargs)
    if index is None:
        if past is None:
            return key, value
        return torch.cat((past[0].to(key.dtype), key), dim=-2), torch.cat((past[1].to(value.dtype), value), dim=-2)
    keys, values = past
    if isinstance(index, int):
        keys.narrow(2, index, key.shape[-2]).copy_(key)
        values.narrow(2, index, value.shape[-2]).copy_(value)
    else:
        keys.index_copy_(2, index, key)
        values.index_copy_(2, index, value)
    if length is None:
        return keys, values
    return keys.narrow(2, 0, length), values.narrow(2, 0, length)


class LayerSlot:
    """What the model hands a layer when it was given a cache object: the cache, the layer, ``update``'s kwargs."""

    __slots__ = ("cache", "layer_idx", "cache_kwargs")

    def __init__(self, cache: Any, layer_idx: int, cache_kwargs: dict[str, Any] | None = None) -> None:
        self.cache, self.layer_idx, self.cache_kwargs = cache, layer_idx, cache_kwargs


class CacheLayer:
    """One layer's cached ``keys`` and ``values`` (B, H, S, D); None before the first update."""

    __slots__ = ("keys", "values")

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None) -> None:
        self.keys, self.values = keys, values

    def __repr__(self) -> str:
        shape = None if self.keys is None else tuple(self.keys.shape)
        return f"CacheLayer(keys/values {shape})"


class Cache:
    """HF's cache interface (see the module docstring); subclasses say how :meth:`update` stores."""

    layers: list[CacheLayer]
    is_compileable = False

    def __init__(self, num_layers: int = 0) -> None:
        self.layers = [CacheLayer() for _ in range(num_layers)]

    # -- what subclasses define
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> KV:
        raise NotImplementedError

    def get_seq_length(self, layer_idx: int = 0) -> int:
        if layer_idx >= len(self.layers) or self.layers[layer_idx].keys is None:
            return 0
        return int(self.layers[layer_idx].keys.shape[-2])

    def get_max_cache_shape(self) -> int | None:
        """The most tokens this cache can hold (None: no limit)."""
        return None

    # -- HF's legacy views
    def to_legacy_cache(self) -> tuple[KV, ...]:
        return tuple((layer.keys, layer.values) for layer in self.layers if layer.keys is not None)

    def __len__(self) -> int:
        return sum(1 for layer in self.layers if layer.keys is not None)

    def __iter__(self) -> Iterator[KV]:
        return iter(self.to_legacy_cache())

    def __getitem__(self, layer_idx: int) -> KV:
        legacy = self.to_legacy_cache()
        if not -len(legacy) <= layer_idx < len(legacy):
            raise IndexError(f"the cache has {len(legacy)} layers, there is no layer {layer_idx}")
        return legacy[layer_idx]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep (or repeat) the batch rows ``beam_idx`` of every layer, in place."""
        for layer in self.layers:
            if layer.keys is not None:
                index = beam_idx.to(layer.keys.device)
                layer.keys = layer.keys.index_select(0, index)
                layer.values = layer.values.index_select(0, index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layers={len(self.layers)}, seq_length={self.get_seq_length()})"


class DynamicCache(Cache):
    """A cache that grows with every call (HF's default): :meth:`update` concatenates along the sequence."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> KV:
        while len(self.layers) <= layer_idx:
            self.layers.append(CacheLayer())
        layer = self.layers[layer_idx]
        past = None if layer.keys is None else (layer.keys, layer.values)
        layer.keys, layer.values = write_cache(past, key_states, value_states)
        return layer.keys, layer.values

    @classmethod
    def from_legacy_cache(cls, past_key_values: Any) -> DynamicCache:
        """A cache holding HF's legacy ``((key, value), ...)`` (None: an empty cache)."""
        cache = cls()
        for layer_idx, (key, value) in enumerate(past_key_values or ()):
            cache.update(key, value, layer_idx)
        return cache

    def crop(self, max_length: int) -> None:
        """Keep the first ``max_length`` tokens (a negative value drops that many from the end), as HF's."""
        if max_length < 0:
            max_length = self.get_seq_length() + max_length
        for layer in self.layers:
            if layer.keys is not None and layer.keys.shape[-2] > max_length:
                layer.keys, layer.values = layer.keys[..., :max_length, :], layer.values[..., :max_length, :]


class StaticCache(Cache):
    """A preallocated cache: ``max_cache_len`` slots per layer, written in place at ``cache_position``.

    ``StaticCache(config, max_batch_size, max_cache_len, device=None, dtype=torch.float32)`` as HF's. Keys and
    values live in one buffer each, ``(n_layer, B, H, max_cache_len, head_dim)``; ``layers[i].keys`` is the
    filled part of layer ``i``. :meth:`update` takes ``cache_kwargs={"cache_position": ...}`` (an int or a (T,)
    long tensor of slots; default: right after the filled part).
    """

    def __init__(self, config: Any, *sizes: int, max_cache_len: int | None = None, max_batch_size: int | None = None,
                 device: Any = None, dtype: torch.dtype = torch.float32) -> None:
        if len(sizes) == 2:  # HF 4.4x: (config, max_batch_size, max_cache_len)
            max_batch_size, max_cache_len = sizes
        elif len(sizes) == 1:  # HF 4.57: (config, max_cache_len)
            max_cache_len = sizes[0]
        elif sizes:
            raise TypeError(f"StaticCache(config, max_cache_len) or (config, max_batch_size, max_cache_len), got {len(sizes)} sizes")
        if not isinstance(max_cache_len, int) or max_cache_len < 1:
            raise ValueError(f"StaticCache needs max_cache_len, a positive int; got {max_cache_len!r}")
        self.config, self.device, self.dtype = config, device, dtype
        self.max_cache_len = max_cache_len
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None
        self.filled = [0] * config.n_layer  # slots written, per layer
        super().__init__(config.n_layer)
        if max_batch_size is not None:
            self._allocate(max_batch_size, device, dtype)

    def _allocate(self, batch: int, device: Any, dtype: torch.dtype) -> None:
        cfg = self.config
        if getattr(cfg, "pruned_heads", None):
            raise ValueError(
                f"a StaticCache holds n_head={cfg.n_head} heads in every layer, but this model's heads are pruned "
                f"({cfg.pruned_heads}); use a DynamicCache (generate: cache_implementation='dynamic')"
            )
        shape = (cfg.n_layer, batch, cfg.n_head, self.max_cache_len, cfg.n_embd // cfg.n_head)
        self.key_buffer = torch.zeros(shape, dtype=dtype, device=device)
        self.value_buffer = torch.zeros(shape, dtype=dtype, device=device)
        self._refresh()

    def _refresh(self, layer_idx: int | None = None) -> None:
        if self.key_buffer is None:
            return
        for i in range(len(self.layers)) if layer_idx is None else (layer_idx,):
            n = self.filled[i]
            self.layers[i].keys = self.key_buffer[i, :, :, :n] if n else None
            self.layers[i].values = self.value_buffer[i, :, :, :n] if n else None

    def get_max_cache_shape(self) -> int:
        return self.max_cache_len

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> KV:
        if self.key_buffer is None:  # HF 4.57's form: the batch, device and dtype of the first keys
            self._allocate(key_states.shape[0], key_states.device, key_states.dtype)
        if key_states.shape[0] != self.key_buffer.shape[1]:
            raise ValueError(f"the static cache was made for a batch of {self.key_buffer.shape[1]}, but this call has "
                             f"{key_states.shape[0]} rows")
        position = (cache_kwargs or {}).get("cache_position")
        t = key_states.shape[-2]
        if position is None:
            position = self.filled[layer_idx]
        elif isinstance(position, torch.Tensor) and position.numel() == 1:
            position = int(position.reshape(()))
        elif isinstance(position, torch.Tensor):
            position = position.to(device=self.key_buffer.device, dtype=torch.long)
        start = position if isinstance(position, int) else int(position.min())
        end = start + t if isinstance(position, int) else int(position.max()) + 1
        if end > self.max_cache_len:
            raise ValueError(f"the static cache holds {self.max_cache_len} tokens; writing slots up to {end} does not fit")
        keys, values = write_cache((self.key_buffer[layer_idx], self.value_buffer[layer_idx]), key_states, value_states,
                                   position, max(end, self.filled[layer_idx]))
        self.filled[layer_idx] = max(end, self.filled[layer_idx])
        self._refresh(layer_idx)
        return keys, values

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.key_buffer is None:
            return
        index = beam_idx.to(self.key_buffer.device)
        self.key_buffer.copy_(self.key_buffer.index_select(1, index))
        self.value_buffer.copy_(self.value_buffer.index_select(1, index))
        self._refresh()

    def reset(self) -> None:
        """Forget everything (the buffers stay allocated)."""
        if self.key_buffer is not None:
            self.key_buffer.zero_()
            self.value_buffer.zero_()
        self.filled = [0] * len(self.layers)
        self._refresh()


def is_cache(value: Any) -> bool:
    """Whether ``value`` is a cache object with HF's interface (ours or anyone's), not a legacy tuple."""
    return not isinstance(value, (tuple, list)) and all(hasattr(value, a) for a in ("update", "get_seq_length"))


__all__ = ["Cache", "CacheLayer", "DynamicCache", "LayerSlot", "StaticCache", "is_cache", "write_cache"]
