"""``gpt2-multi train`` in TensorFlow: Keras ``fit`` with ``keras.optimizers.AdamW`` (the driver is
:mod:`gpt2_multi.training.run`).

One Keras epoch is one optimizer step (``steps_per_epoch=1``), so that the driver's callbacks see each
step's own loss (Keras averages ``logs["loss"]`` over an epoch) and ``initial_epoch`` is the resumed
step. A callback sets each step's learning rate before the step and hands the loss to the driver after
it; stopping (Ctrl-C) sets ``model.stop_training``. Keras' own AdamW adds epsilon to the uncorrected
``sqrt(v)`` (see :mod:`gpt2_multi.training`), which moves small gradients (an embedding row seen once)
measurably away from PyTorch's and optax's update; :class:`AdamW` below is Keras' optimizer with their
placement, so that the three loss curves agree. Dropout masks are Keras' own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gpt2_multi.tf.loading import from_variable_value, to_variable_value, variable_pt_name
from gpt2_multi.training import AdamWHyper, decays
from gpt2_multi.training.run import OptimizerState, TrainLoop


class AdamW(keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with PyTorch's epsilon: ``m_hat / (sqrt(v_hat) + eps)``.

    Keras' step is ``alpha * m / (sqrt(v) + eps)`` with ``alpha = lr * sqrt(1 - b2**t) / (1 - b1**t)``; the same
    with ``eps * sqrt(1 - b2**t)`` in place of ``eps`` is PyTorch's step exactly. Weight decay is Keras' own
    (``w -= lr * wd * w`` before the update, as PyTorch). No amsgrad.
    """

    def update_step(self, gradient, variable, learning_rate):
        ops = keras.ops
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        bias_1 = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), step)
        bias_2 = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), step)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        alpha = lr * ops.sqrt(bias_2) / bias_1
        self.assign_sub(variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon * ops.sqrt(bias_2))))


class _Steps(keras.callbacks.Callback):
    def __init__(self, loop: TrainLoop, trainer: Trainer) -> None:
        super().__init__()
        self.loop, self.trainer = loop, trainer

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.trainer.optimizer.learning_rate = self.loop.learning_rate(epoch)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.trainer.steps_done = epoch + 1
        if not self.loop.step_done(epoch, float(logs["loss"])):
            self.model.stop_training = True


class Trainer:
    """A ``TFGPT2LMHeadModel`` compiled with :class:`AdamW` (the non-decayed variables excluded from weight decay)."""

    def __init__(self, path: Path, hyper: AdamWHyper, seed: int = 0) -> None:
        from gpt2_multi.tf import TFGPT2LMHeadModel

        self.model = TFGPT2LMHeadModel.from_pretrained(str(path))
        self.variables = {variable_pt_name(v): v for v in self.model.trainable_variables}
        self.optimizer = AdamW(learning_rate=hyper.lr, weight_decay=hyper.weight_decay,
                                                beta_1=hyper.betas[0], beta_2=hyper.betas[1], epsilon=hyper.eps)
        self.optimizer.exclude_from_weight_decay(var_list=[v for n, v in self.variables.items() if not decays(n)])
        self.optimizer.build(list(self.variables.values()))
        self.model.compile(optimizer=self.optimizer)  # no loss=: the model's own LM loss
        self.steps_done = 0

    def fit(self, loop: TrainLoop) -> None:
        def batches():
            for step in range(loop.start, loop.stop):
                ids = loop.batch(step)
                yield {"input_ids": ids, "labels": ids}

        spec = tf.TensorSpec((None, None), tf.int32)
        data = tf.data.Dataset.from_generator(batches, output_signature={"input_ids": spec, "labels": spec})
        self.model.fit(data, epochs=loop.stop, initial_epoch=loop.start, steps_per_epoch=1,
                       shuffle=False, callbacks=[_Steps(loop, self)], verbose=0)

    def eval_loss(self, input_ids: np.ndarray) -> float:
        return float(self.model(input_ids=input_ids, labels=input_ids, training=False).loss)

    # -- state in the shared layout
    def weights(self) -> dict[str, np.ndarray]:
        return {n: from_variable_value(n, np.asarray(keras.ops.convert_to_numpy(v), np.float32)) for n, v in self.variables.items()}

    def _moments(self, variable: Any) -> tuple[Any, Any]:
        index = self.optimizer._get_variable_index(variable)  # Keras 3's own (private) lookup of a variable's slots
        return self.optimizer._momentums[index], self.optimizer._velocities[index]

    def optimizer_state(self) -> OptimizerState:
        avg, sq = {}, {}
        for name, variable in self.variables.items():
            m, v = self._moments(variable)
            avg[name] = from_variable_value(name, np.asarray(keras.ops.convert_to_numpy(m), np.float32))
            sq[name] = from_variable_value(name, np.asarray(keras.ops.convert_to_numpy(v), np.float32))
        return OptimizerState(int(keras.ops.convert_to_numpy(self.optimizer.iterations)), avg, sq)

    def load_optimizer_state(self, state: OptimizerState) -> None:
        for name, variable in self.variables.items():
            m, v = self._moments(variable)
            m.assign(to_variable_value(name, state.exp_avg[name]))
            v.assign(to_variable_value(name, state.exp_avg_sq[name]))
        self.optimizer.iterations.assign(state.step)
        self.steps_done = state.step


__all__ = ["AdamW", "Trainer"]
