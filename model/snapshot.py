"""The weights of a model at one epoch (the best so far), kept while training goes on.

A snapshot is a copy into buffers allocated at the first take and reused after, so keeping the best epoch
costs one copy of the weights per improving epoch and one model's worth of memory: on CUDA the copy stays
on the device (device-to-device, no host sync; AlexNet's 93 MB take well under a millisecond at HBM
bandwidth), elsewhere in host memory.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightSnapshot:
    def __init__(self) -> None:
        self.epoch = 0  # the epoch (1-based) the weights are from; 0 = none taken
        self._state: dict[str, torch.Tensor] | None = None

    def take(self, model: nn.Module, epoch: int) -> None:
        with torch.no_grad():
            if self._state is None:
                self._state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                for k, v in model.state_dict().items():
                    self._state[k].copy_(v, non_blocking=True)
        self.epoch = epoch

    def load(self, state: dict[str, torch.Tensor], epoch: int, device: torch.device) -> None:
        """Restore a snapshot saved in a checkpoint (host tensors) onto device."""
        self._state = {k: v.to(device) for k, v in state.items()}
        self.epoch = epoch

    def tensors(self) -> dict[str, torch.Tensor] | None:
        """The snapshot's own tensors, on their device and not copied: for torch.save, which only reads them."""
        return self._state

    def cpu_state(self) -> dict[str, torch.Tensor] | None:
        """The weights as a CPU state_dict (what torch.save writes and torch.load(weights_only=True) reads)."""
        if self._state is None:
            return None
        return {k: v.detach().to("cpu", copy=True) for k, v in self._state.items()}
