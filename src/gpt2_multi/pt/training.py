"""``gpt2-multi train`` in PyTorch: a plain ``torch.optim.AdamW`` loop (the driver is :mod:`gpt2_multi.training.run`).

The model trains in ``train()`` mode (dropout as the config says); each step seeds PyTorch's generator
with ``(seed, step)``, so a resumed run draws the same dropout masks as an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpt2_multi.training import AdamWHyper, decays
from gpt2_multi.training.run import OptimizerState, TrainLoop


class Trainer:
    """A ``GPT2LMHeadModel`` and its AdamW optimizer (two parameter groups: decayed and not)."""

    def __init__(self, path: Path, hyper: AdamWHyper, seed: int = 0) -> None:
        from gpt2_multi.pt import GPT2LMHeadModel

        self.model = GPT2LMHeadModel.from_pretrained(path, torch_dtype=torch.float32)
        self.model.train()
        self.seed = seed
        self.params = dict(self.model.named_parameters())  # a tied head is listed once, as transformer.wte.weight
        groups = [{"params": [p for n, p in self.params.items() if decays(n)], "weight_decay": hyper.weight_decay},
                  {"params": [p for n, p in self.params.items() if not decays(n)], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=hyper.lr, betas=hyper.betas, eps=hyper.eps)
        self.steps_done = 0

    # -- the loop
    def fit(self, loop: TrainLoop) -> None:
        with torch.random.fork_rng(devices=[]):  # the per-step seeds leave the caller's generator as it was
            self._fit(loop)

    def _fit(self, loop: TrainLoop) -> None:
        for step in range(loop.start, loop.stop):
            torch.manual_seed(hash((self.seed, step)) & 0x7FFF_FFFF_FFFF_FFFF)
            for group in self.optimizer.param_groups:
                group["lr"] = loop.learning_rate(step)
            ids = torch.from_numpy(loop.batch(step)).long()
            loss = self.model(input_ids=ids, labels=ids, use_cache=False).loss
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.steps_done = step + 1
            if not loop.step_done(step, loss.item()):
                break

    def eval_loss(self, input_ids: np.ndarray) -> float:
        self.model.eval()
        try:
            with torch.no_grad():
                ids = torch.from_numpy(input_ids).long()
                return float(self.model(input_ids=ids, labels=ids, use_cache=False).loss)
        finally:
            self.model.train()

    # -- state in the shared layout
    def weights(self) -> dict[str, np.ndarray]:
        return {n: p.detach().float().numpy().copy() for n, p in self.params.items()}

    def optimizer_state(self) -> OptimizerState:
        avg, sq = {}, {}
        for name, p in self.params.items():
            state: dict[str, Any] = self.optimizer.state.get(p, {})
            avg[name] = state["exp_avg"].numpy().copy() if state else np.zeros(p.shape, np.float32)
            sq[name] = state["exp_avg_sq"].numpy().copy() if state else np.zeros(p.shape, np.float32)
        return OptimizerState(self.steps_done, avg, sq)

    def load_optimizer_state(self, state: OptimizerState) -> None:
        for name, p in self.params.items():
            self.optimizer.state[p] = {"step": torch.tensor(float(state.step)),
                                       "exp_avg": torch.from_numpy(np.array(state.exp_avg[name], np.float32)),
                                       "exp_avg_sq": torch.from_numpy(np.array(state.exp_avg_sq[name], np.float32))}
        self.steps_done = state.step


__all__ = ["Trainer"]
