"""``GenerationConfig``: decoding settings shared by the three stacks, compatible with HF's ``generation_config.json``.

Framework-free: the one list of settings with HF's defaults, their validation and the length
arithmetic. :mod:`gpt2_multi.generation.plan` turns a config and a prompt into what a stack runs.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gpt2_multi.filenames import GENERATION_CONFIG_NAME
from gpt2_multi.io_utils import atomic_write_text
from gpt2_multi.validation import InputIndexError

# HF's defaults for the settings gpt2-multi implements.
DEFAULTS: dict[str, Any] = {
    "max_length": 20,
    "max_new_tokens": None,
    "min_length": 0,
    "min_new_tokens": None,
    "early_stopping": False,
    "do_sample": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "num_return_sequences": 1,
    "output_scores": False,
    "return_dict_in_generate": False,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
    "use_cache": True,
}


class GenerationConfig:
    """HF's ``GenerationConfig`` for the settings we implement; other keys are kept and written back."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("transformers_version", None)
        self._from_model_config = bool(kwargs.pop("_from_model_config", False))
        for key, default in DEFAULTS.items():
            setattr(self, key, kwargs.pop(key, copy.deepcopy(default)))
        self._extra = dict(kwargs)
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model_config(cls, config: Any) -> GenerationConfig:
        """Token ids from a ``GPT2Config`` (what HF does when a checkpoint has no generation_config.json)."""
        return cls(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                   pad_token_id=config.pad_token_id, _from_model_config=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> GenerationConfig:
        return cls(**{**data, **overrides})

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> GenerationConfig:
        path = Path(directory)
        path = path if path.is_file() else path / GENERATION_CONFIG_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no {GENERATION_CONFIG_NAME} at {path}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
        return cls.from_dict(data, **overrides)

    @classmethod
    def for_model(cls, config: Any, directory: str | os.PathLike | None) -> GenerationConfig:
        """The checkpoint's generation_config.json if it has one, else the model config's token ids."""
        if directory is not None and (Path(directory) / GENERATION_CONFIG_NAME).is_file():
            return cls.from_pretrained(directory)
        return cls.from_model_config(config)

    def to_dict(self) -> dict[str, Any]:
        out = {key: copy.deepcopy(getattr(self, key)) for key in DEFAULTS}
        out.update(copy.deepcopy(self._extra))
        if self._from_model_config:
            out["_from_model_config"] = True
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in DEFAULTS or DEFAULTS[k] != v}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / GENERATION_CONFIG_NAME
        atomic_write_text(path, json.dumps(self.to_diff_dict(), indent=2, sort_keys=True) + "\n")
        return path

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the known keys from ``kwargs``; return the ones this config does not know (HF semantics)."""
        unused = {}
        for key, value in kwargs.items():
            if key in DEFAULTS or key in self._extra:
                setattr(self, key, value)
            else:
                unused[key] = value
        self.validate()
        return unused

    def copy(self, **kwargs: Any) -> GenerationConfig:
        new = GenerationConfig.from_dict(self.to_dict())
        unused = new.update(**kwargs)
        if unused:
            raise TypeError(f"generate() got unexpected keyword argument(s): {', '.join(sorted(unused))}")
        return new

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"GenerationConfig {json.dumps(self.to_diff_dict(), sort_keys=True)}"

    # ------------------------------------------------------------------ validation
    @property
    def eos_token_ids(self) -> list[int]:
        eos = self.eos_token_id
        if eos is None:
            return []
        return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]

    def validate(self) -> None:
        def positive_int(name: str, minimum: int = 1) -> None:
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")

        positive_int("num_beams")
        positive_int("num_return_sequences")
        positive_int("max_length")
        positive_int("min_length", 0)
        positive_int("no_repeat_ngram_size", 0)
        positive_int("top_k", 0)
        for name in ("max_new_tokens", "min_new_tokens"):
            if getattr(self, name) is not None:
                positive_int(name, 0)
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0:
            raise ValueError(f"temperature must be a positive number, got {self.temperature!r} (use do_sample=False for greedy)")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.repetition_penalty, (int, float)) or not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be a positive number, got {self.repetition_penalty!r}")
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        if not isinstance(self.length_penalty, (int, float)) or isinstance(self.length_penalty, bool):
            raise ValueError(f"length_penalty must be a number, got {self.length_penalty!r}")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams ({self.num_beams}) "
                "in beam search"
            )
        if self.num_return_sequences > 1 and not self.do_sample and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams ({self.num_beams}) "
                "when not sampling; set do_sample=True or raise num_beams"
            )
        for value in self.eos_token_ids + [v for v in (self.pad_token_id, self.bos_token_id) if v is not None]:
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"token ids must be non-negative ints, got {value!r}")

    def new_tokens(self, prompt_length: int, n_positions: int) -> tuple[int, int]:
        """``(min_new, max_new)`` tokens for a prompt of ``prompt_length``; ``max_new_tokens`` wins over ``max_length``.

        Raises when nothing can be generated or the total would exceed ``n_positions``.
        """
        max_new = self.max_new_tokens if self.max_new_tokens is not None else self.max_length - prompt_length
        if max_new <= 0:
            raise ValueError(
                f"the prompt has {prompt_length} tokens and max_length={self.max_length}: nothing to generate; "
                "set max_new_tokens"
            )
        if prompt_length + max_new > n_positions:  # an IndexError too, as HF's position lookup raises
            raise InputIndexError(
                f"prompt ({prompt_length}) + new tokens ({max_new}) = {prompt_length + max_new} exceeds the model's "
                f"n_positions={n_positions}"
            )
        min_new = self.min_new_tokens if self.min_new_tokens is not None else max(self.min_length - prompt_length, 0)
        return min(min_new, max_new), max_new

