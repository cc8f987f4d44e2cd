"""Device-to-host copies that do not stall the device: the scheduling is separate from the device.

`DeferredArrays` collects, during a shard's forward passes, where each device tensor goes in the shard's payload
arrays, and fills them later (`finish`, run by the shard writer's thread). `HostCopier` stages each tensor:
- on CUDA it copies it into a reused pinned host buffer with `non_blocking=True` on a side stream and records an
  event, so the next forward pass is queued while the copies run; `finish` waits on each copy's event;
- on CPU the tensor already lies in host memory: it is kept as it is (no pinning, no extra copy), and `finish`
  copies it into the payload array; `buffered=True` runs the CUDA scheme's buffer pool with plain copies instead
  (how its code is tested without a GPU).
Staged buffers are bounded (`BUFFER_LIMIT`); past it a tensor is copied at once, so memory stays bounded however far
the forward passes run ahead of the writer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

BUFFER_ALIGN = 256  # bytes: a buffer of this multiple can be viewed as any dtype
# Host buffers staged at once, at most (pinned memory is scarce and slow to allocate): beyond it a tensor is copied
# at once instead (correct, not overlapped). About ten 640x480 samples of a 7B model's hidden + K + V.
BUFFER_LIMIT = 8 * 2**30


def to_storage(tensor: torch.Tensor) -> np.ndarray:
    """CPU numpy array in the store's on-disk dtype (bf16 as its raw uint16 bits)."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.uint16)
    return tensor.cpu().numpy()


class BufferPool:
    """Host buffers reused across shards (pinned for CUDA copies). Thread-safe: taken on the capture thread,
    given back on the writer's. Grows to the most bytes in flight at once, which the writer's queue bounds."""

    def __init__(self, pin: bool, limit: int = BUFFER_LIMIT):
        self.pin = pin
        self.limit = limit
        self.free: list[torch.Tensor] = []
        self.allocated_bytes = 0
        self.lock = threading.Lock()

    def take(self, nbytes: int) -> torch.Tensor | None:
        """A flat uint8 buffer of at least `nbytes` (the smallest free one that fits, else a new one); None when a
        new one would pass `limit` (the caller then copies without a buffer)."""
        with self.lock:
            fitting = [b for b in self.free if b.numel() >= nbytes]
            if fitting:
                buffer = min(fitting, key=torch.Tensor.numel)
                self.free.remove(buffer)
                return buffer
            size = -(-max(nbytes, 1) // BUFFER_ALIGN) * BUFFER_ALIGN
            if self.allocated_bytes + size > self.limit:
                return None
            self.allocated_bytes += size
        return torch.empty(size, dtype=torch.uint8, pin_memory=self.pin)

    def give_back(self, buffer: torch.Tensor) -> None:
        with self.lock:
            self.free.append(buffer)


@dataclass
class Staged:
    """A tensor on its way to the host: `host` holds (or will hold, once `event` completes) its values."""

    host: torch.Tensor
    event: Any = None  # torch.cuda.Event of the copy, None when the values are there already
    buffer: torch.Tensor | None = None  # the pool buffer behind `host`, given back by `release`

    def values(self) -> np.ndarray:
        """The values in the store's dtype, once the copy has landed (waits for it)."""
        if self.event is not None:
            self.event.synchronize()
        return to_storage(self.host)


class HostCopier:
    """Stages device tensors into host memory for `device` (see the module docstring)."""

    def __init__(self, device: torch.device, buffered: bool | None = None, limit: int = BUFFER_LIMIT):
        self.device = device
        self.cuda = device.type == "cuda"
        self.buffered = self.cuda if buffered is None else buffered
        # pinned buffers are kept for the process's later captures (pinning gigabytes takes seconds)
        self.pool = _pinned_pool(device, limit) if self.cuda else BufferPool(pin=False, limit=limit)
        self.stream = torch.cuda.Stream(device) if self.cuda else None

    def stage(self, tensor: torch.Tensor) -> Staged:
        """Start copying `tensor` (any layout) to the host; the caller must not modify it afterwards."""
        tensor = tensor.detach()
        if not self.buffered:
            return Staged(tensor.cpu())
        buffer = self.pool.take(tensor.numel() * tensor.element_size())
        if buffer is None:  # the buffers in flight reach the limit: copy now
            return Staged(tensor.cpu())
        host = buffer[: tensor.numel() * tensor.element_size()].view(tensor.dtype).view(tensor.shape)
        if not self.cuda:
            host.copy_(tensor)
            return Staged(host, None, buffer)
        self.stream.wait_stream(torch.cuda.current_stream(self.device))  # the forward pass that made `tensor`
        with torch.cuda.stream(self.stream):
            host.copy_(tensor, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        tensor.record_stream(self.stream)  # its memory is not reused before the copy is done
        return Staged(host, event, buffer)

    def release(self, staged: Staged) -> None:
        if staged.buffer is not None:
            self.pool.give_back(staged.buffer)


_PINNED_POOLS: dict[torch.device, BufferPool] = {}


def _pinned_pool(device: torch.device, limit: int) -> BufferPool:
    if device not in _PINNED_POOLS:
        _PINNED_POOLS[device] = BufferPool(pin=True, limit=limit)
    return _PINNED_POOLS[device]


class DeferredArrays:
    """The device tensors of one shard and where each goes in the payload; `copier` None copies at once."""

    def __init__(self, copier: HostCopier | None):
        self.copier = copier
        self.fills: list[tuple[np.ndarray, Any, Staged]] = []

    def put(self, target: np.ndarray, index: Any, tensor: torch.Tensor) -> None:
        """`target[index] = tensor` (in the store's dtype), now or at `finish`."""
        if self.copier is None:
            target[index] = to_storage(tensor)
        else:
            self.fills.append((target, index, self.copier.stage(tensor)))

    def finish(self) -> None:
        """Wait for every copy and write it into its target (called on the writer's thread)."""
        for target, index, staged in self.fills:
            target[index] = staged.values()
            self.copier.release(staged)
        self.fills.clear()

