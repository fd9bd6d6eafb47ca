"""Bad input as a contract: one table of (bad input, expected exception, message) run in every backend.

The expected message is the shared wording of :mod:`gpt2_multi.validation` (where it has one; else HF's,
or the form of :func:`~gpt2_multi.validation.check_same_shape` for a shape). Where a stack says something else
today, the row names what it says (``today``, checked), and that backend's param is
``xfail(strict=True, raises=DiffersFromTheContract)``: the stack must still raise what it raises today, and a stack
that moves to the shared wording turns its mark into an XPASS failure (then drop the entry).

Rows whose ``error`` is None are inputs HF's PyTorch model takes (no error); a stack that refuses them differs.
A row's ``static_match`` is the wording for a stack with a fixed-size cache (HF's Flax API: ``init_cache(batch,
max_length)``, a mask over all ``max_length`` positions), where the same bad input meets a different argument.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from contract_support import (  # noqa: F401
    DiffersFromTheContract,
    backend_param,
    call,
    has_static_cache,
    one_torch_thread,
    prefill,
    write_checkpoint,
)

from gpt2_multi import validation
from gpt2_multi.backends import BACKENDS
from gpt2_multi.validation import InputError


def _ones(*shape: int) -> np.ndarray:
    return np.ones(shape, np.int64)


def _ids(batch: int = 3, seq: int = 10) -> np.ndarray:
    return np.random.default_rng(1).integers(1, 1000, size=(batch, seq))


@dataclass(frozen=True)
class Bad:
    """One bad input: ``inputs()`` are the call's arguments; ``past`` a (batch, length) prefix cached first."""

    name: str
    inputs: Callable[[], dict]
    error: type[BaseException] | None  # None: HF's PyTorch model takes this input
    match: str = ""  # regex of the shared wording
    head: str = "lm"
    past: tuple[int, int] | None = None
    past_edit: Callable | None = None  # changes the cache before the call (a cache of the wrong size)
    static_match: str | None = None  # the wording with a fixed-size cache (HF's Flax API: init_cache(batch, max_length))
    today: dict[str, tuple[type[BaseException], str]] = field(default_factory=dict)  # backend -> what it raises


def _vocab_ids() -> dict:
    x = _ids()
    x[1, 3] = 1000
    return {"input_ids": x}


def _first_layer_only(past):
    """The cache with only its first layer (native layouts: a tuple per layer, or Flax's ``h`` dict)."""
    if isinstance(past, dict):
        return {k: ({"0": v["0"]} if k == "h" else _first_layer_only(v)) if isinstance(v, dict) else v
                for k, v in past.items()}
    if hasattr(past, "to_legacy_cache"):  # PyTorch's DynamicCache
        return type(past).from_legacy_cache(past.to_legacy_cache()[:1])
    return past[:1]


TABLE = [
    # ids and token types
    Bad("id-out-of-vocabulary", _vocab_ids, InputError,
        r"input_ids holds id 1000 at position \(1, 3\), outside the vocabulary \[0, 1000\) \(vocab_size=1000\)"),
    Bad("negative-id", lambda: {"input_ids": np.array([[-1, 2]])}, InputError,
        r"input_ids holds id -1 at position \(0, 0\), outside the vocabulary \[0, 1000\)"),
    Bad("float-ids", lambda: {"input_ids": np.ones((1, 4), np.float32)}, InputError,
        r"input_ids must hold integer token ids, got dtype"),
    Bad("one-dimensional-ids", lambda: {"input_ids": np.array([1, 2, 3])}, None),
    Bad("token-type-out-of-vocabulary", lambda: {"input_ids": _ids(), "token_type_ids": np.full((3, 10), 5000)},
        InputError, r"token_type_ids holds id 5000 at position \(0, 0\), outside the vocabulary \[0, 1000\)"),
    # lengths and positions
    Bad("longer-than-n_positions", lambda: {"input_ids": _ids(1, 65)}, InputError,
        r"sequence of 65 tokens \(65\) is longer than the model's n_positions=64"),
    Bad("cached-plus-new-longer-than-n_positions", lambda: {"input_ids": _ids(1, 5)}, InputError,
        r"sequence of 65 tokens \(60 cached \+ 5 new\) is longer than the model's n_positions=64", past=(1, 60),
        static_match=r"init_cache\(max_length=65\) is longer than the model's n_positions=64"),
    Bad("position-out-of-range", lambda: {"input_ids": _ids(1, 5), "position_ids": np.arange(62, 67)[None]},
        InputError, r"position_ids must lie in \[0, 64\) \(n_positions\), got values from 62 to 66"),
    Bad("position-ids-shape", lambda: {"input_ids": _ones(1, 4), "position_ids": np.arange(5)[None]}, InputError,
        r"position_ids has shape \(1, 5\) but must be \(1, 4\)"),
    Bad("token-type-ids-shape", lambda: {"input_ids": _ones(1, 4), "token_type_ids": _ones(1, 3)}, InputError,
        r"token_type_ids has shape \(1, 3\) but must be \(1, 4\)"),
    # masks
    Bad("attention-mask-length", lambda: {"input_ids": _ids(), "attention_mask": _ones(3, 9)}, InputError,
        r"attention_mask has shape \(3, 9\) but must be \(3, 10\): batch 3, covering 10 tokens"),
    Bad("attention-mask-over-new-tokens-only", lambda: {"input_ids": _ids(3, 2), "attention_mask": _ones(3, 2)},
        InputError, r"attention_mask has shape \(3, 2\) but must be \(3, 6\): batch 3, covering 4 cached \+ 2 new tokens",
        past=(3, 4),
        static_match=r"attention_mask has shape \(3, 2\) but must be \(3, 6\): with a cache it covers all max_length=6 "
                     r"positions"),
    Bad("head-mask-shape", lambda: {"input_ids": _ids(), "head_mask": np.ones(3, np.float32)}, InputError,
        r"head_mask has shape \(3,\) but must be \(4,\) or \(2, 4\) \(n_layer, n_head\)"),
    Bad("head-mask-layers", lambda: {"input_ids": _ones(2, 4), "head_mask": np.ones((3, 4), np.float32)}, InputError,
        r"head_mask has shape \(3, 4\) but must be \(4,\) or \(2, 4\)"),
    # ids or embeddings
    Bad("ids-and-embeddings", lambda: {"input_ids": _ids(), "inputs_embeds": np.zeros((3, 10, 32), np.float32)},
        InputError, r"pass either input_ids or inputs_embeds, not both"),
    Bad("neither-ids-nor-embeddings", lambda: {}, InputError, r"^pass input_ids or inputs_embeds$"),
    Bad("embeddings-width", lambda: {"inputs_embeds": np.zeros((1, 4, 31), np.float32)}, InputError,
        r"inputs_embeds has shape \(1, 4, 31\) but must be \(batch, sequence, 32\) \(n_embd\)"),
    Bad("unknown-argument", lambda: {"input_ids": _ones(1, 4), "bogus": 1}, TypeError,
        r"got an unexpected keyword argument 'bogus'"),
    # labels
    Bad("lm-label-out-of-vocabulary", lambda: {"input_ids": _ids(), "labels": np.full((3, 10), 1000)}, InputError,
        r"labels holds 1000 at position \(0, 0\); expected values in \[0, 1000\) or -100 \(ignored\)"),
    Bad("lm-labels-shape", lambda: {"input_ids": _ones(2, 4), "labels": _ones(2, 3)}, InputError,
        r"labels has shape \(2, 3\) but must be \(2, 4\)"),
    Bad("class-label-out-of-range", lambda: {"input_ids": _ones(1, 4), "labels": np.array([3])}, InputError,
        r"labels holds 3 at position \(0,\); expected values in \[0, 3\) or -100 \(ignored\)", head="seqcls"),
    Bad("token-label-out-of-range", lambda: {"input_ids": _ones(1, 4), "labels": np.array([[0, 1, 2, 3]])}, InputError,
        r"labels holds 3 at position \(0, 3\); expected values in \[0, 3\)", head="tokcls"),
    Bad("mc-token-beyond-the-sequence", lambda: {"input_ids": _ones(1, 2, 5), "mc_token_ids": np.array([[1, 5]])},
        InputError, r"mc_token_ids holds 5 at position \(0, 1\); expected values in \[0, 5\)$", head="double"),
    Bad("mc-label-out-of-range", lambda: {"input_ids": _ones(1, 2, 5), "mc_labels": np.array([2])}, InputError,
        r"mc_labels holds 2 at position \(0,\); expected values in \[0, 2\) or -100 \(ignored\)", head="double"),
    Bad("a-batch-without-pad-token", lambda: {"input_ids": _ones(2, 4)}, ValueError,
        r"Cannot handle batch sizes > 1 if no padding token is defined\.", head="seqcls-no-pad"),
    Bad("start-positions-without-end-positions", lambda: {"input_ids": _ones(1, 4), "start_positions": np.array([1])},
        None, head="qa"),
    Bad("encoder-states-without-cross-attention",
        lambda: {"input_ids": _ids(), "encoder_hidden_states": np.zeros((3, 4, 32), np.float32)}, InputError,
        re.escape(validation.NO_CROSS_ATTENTION)),
    # caches
    Bad("cache-with-too-few-layers", lambda: {"input_ids": _ids(3, 2)}, InputError,
        r"past_key_values has 1 layers but the model has n_layer=2", past=(3, 4), past_edit=_first_layer_only),
    Bad("cache-of-another-batch", lambda: {"input_ids": _ids(2, 2)}, InputError,
        r"past_key_values\[0\] key has shape \(3, 4, 4, 8\) but must be \(2, 4, 4, 8\)", past=(3, 4),
        static_match=r"past_key_values\[0\] key has shape \(3, 6, 4, 8\) but must be \(2, 6, 4, 8\)"),
]
#: an exception every row's stack may raise (ValueError covers InputError)
CAUGHT = (ValueError, TypeError)


def _params():
    params = []
    for b in BACKENDS:
        for row in TABLE:
            marks = []
            if b in row.today:
                error, match = row.today[b]
                reason = f"{b} raises {error.__name__} matching {match!r}"
                marks = [pytest.mark.xfail(strict=True, raises=DiffersFromTheContract, reason=reason)]
            params.append(backend_param(b, row, id=f"{b}-{row.name}", marks=marks))
    return params


def test_the_table_names_every_differing_stack_once():
    assert len({row.name for row in TABLE}) == len(TABLE)
    assert all(set(row.today) <= set(BACKENDS) for row in TABLE)


#: rows HF's PyTorch model takes (with its eager attention, the path that honours head_mask) and every stack refuses;
#: README's "Differences from HF, on purpose" lists them
STRICTER_THAN_HF = {"attention-mask-length", "attention-mask-over-new-tokens-only", "head-mask-layers",
                    "cache-with-too-few-layers", "unknown-argument"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors-contract")
    paths = {head: write_checkpoint(root / head, head) for head in ("lm", "seqcls", "tokcls", "double", "qa")}
    paths["seqcls-no-pad"] = write_checkpoint(root / "seqcls-no-pad", "seqcls", pad_token_id=None)
    return paths


def _run(backend: str, model, row: Bad) -> None:
    kwargs = row.inputs()
    if row.past is not None:
        batch, length = row.past
        new = kwargs["input_ids"].shape[-1]
        past = prefill(backend, model, _ids(batch, length), length + new)
        if row.past_edit is not None:
            past = row.past_edit(past)
        kwargs["past_key_values"] = past
        if has_static_cache(model):  # the positions of the new tokens, as Flax needs them with a cache
            kwargs["position_ids"] = np.broadcast_to(np.arange(length, length + new), kwargs["input_ids"].shape).copy()
    call(backend, model, **kwargs)


def _raised(backend: str, model, row) -> BaseException | None:
    """What running ``row`` on ``model`` raised (one of :data:`CAUGHT`), or None."""
    try:
        _run(backend, model, row)
    except CAUGHT as err:
        return err
    return None


@pytest.mark.parametrize(("backend", "row"), _params())
def test_bad_input_raises_the_shared_error(backend, row, checkpoints, loaded):
    model = loaded(backend, checkpoints[row.head], row.head.removesuffix("-no-pad"))
    raised = _raised(backend, model, row)
    if row.error is None and raised is None:
        return
    match = row.static_match if row.static_match is not None and has_static_cache(model) else row.match
    if row.error is not None and isinstance(raised, row.error) and re.search(match, _message(raised)):
        return
    assert backend in row.today, f"raised {raised!r}; the contract: {row.error} matching {match!r}"
    error, match = row.today[backend]
    assert isinstance(raised, error) and re.search(match, _message(raised)), f"{backend} now raises {raised!r}"
    raise DiffersFromTheContract(f"{backend}: {type(raised).__name__}: {_message(raised)}")


def _message(err: BaseException) -> str:
    """The message, without Keras' wrapping (``Exception encountered when calling ...``, ANSI bold)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("Exception encountered when calling"):
        lines = lines[1:]
        lines = lines[:next((i for i, line in enumerate(lines) if line.startswith("Arguments received")), len(lines))]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ HF's exception types
@pytest.fixture(scope="module")
def hf_error(checkpoints):
    """``hf_error(row)``: what HF transformers' PyTorch model (eager attention) raises for the row's input, loaded
    from the same checkpoint; None where it takes the input. Skips without transformers."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from gpt2_multi.conformance.cases import HEADS

    transformers.logging.set_verbosity_error()
    models: dict[str, object] = {}
    found: dict[str, BaseException | None] = {}

    def model(head: str):
        if head not in models:
            cls = getattr(transformers, HEADS[head.removesuffix("-no-pad")])
            models[head] = cls.from_pretrained(str(checkpoints[head]), attn_implementation="eager").eval()
        return models[head]

    def torched(value):
        return torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value

    def raised(row: Bad) -> BaseException | None:
        if row.name not in found:
            hf = model(row.head)
            kwargs = {k: torched(v) for k, v in row.inputs().items()}
            try:
                with torch.no_grad():
                    if row.past is not None:
                        past = hf(input_ids=torched(_ids(*row.past)), use_cache=True).past_key_values
                        kwargs["past_key_values"] = row.past_edit(past) if row.past_edit is not None else past
                    hf(**kwargs)
            except Exception as err:  # noqa: BLE001 - whatever HF raises is the oracle
                found[row.name] = err
            else:
                found[row.name] = None
        return found[row.name]

    return raised


def _type_params():
    return [backend_param(b, row, id=f"{b}-{row.name}") for b in BACKENDS for row in TABLE
            if row.error is not None and b not in row.today]


@pytest.mark.parametrize(("backend", "row"), _type_params())
def test_our_error_is_an_instance_of_the_type_hf_raises(backend, row, checkpoints, loaded, hf_error):
    """Issue 17: for the same bad input, our exception is an instance of the built-in type HF's PyTorch model raises
    (an out-of-vocabulary id: IndexError; float ids: RuntimeError; ...), so an ``except`` written for HF still
    catches it. Rows HF takes are exactly :data:`STRICTER_THAN_HF` (there our InputError is a ValueError)."""
    expected = hf_error(row)
    if expected is None:
        assert row.name in STRICTER_THAN_HF, f"HF takes {row.name!r}: add it to STRICTER_THAN_HF and to README"
        return
    assert row.name not in STRICTER_THAN_HF, f"HF now raises {expected!r} for {row.name!r}"
    model = loaded(backend, checkpoints[row.head], row.head.removesuffix("-no-pad"))
    raised = _raised(backend, model, row)
    assert isinstance(raised, type(expected)), f"HF raises {expected!r}; {backend} raised {raised!r}"
