"""Sharding on 8 simulated CPU devices (a subprocess, XLA_FLAGS set before JAX starts): sharded == unsharded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.flax
pytest.importorskip("jax")
pytest.importorskip("flax")

from fixture_cases import checkpoint_dir  # noqa: E402

SCRIPT = textwrap.dedent(r"""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import PartitionSpec as P
    from gpt2_multi.flax import DATA_PARALLEL_RULES, TENSOR_PARALLEL_RULES, FlaxGPT2LMHeadModel, make_mesh, shard_batch, shard_params
    from gpt2_multi.flax.training import create_train_state, train_step

    assert jax.device_count() == 8, jax.devices()
    mesh = make_mesh((4, 2), ("data", "model"))
    model = FlaxGPT2LMHeadModel.from_pretrained(sys.argv[1])
    report = {}

    rng = np.random.RandomState(0)
    ids = rng.randint(1, 1000, size=(8, 12))
    mask = np.ones((8, 12), np.int32)
    mask[::2, 9:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": np.where(mask == 1, ids, -100)}
    ref = model(ids, attention_mask=mask, labels=batch["labels"])
    key = jax.random.PRNGKey(0)
    _, ref_loss = train_step(create_train_state(model, optax.sgd(0.1)), batch, key)

    for name, rules in (("tp", TENSOR_PARALLEL_RULES), ("dp", DATA_PARALLEL_RULES)):
        params = shard_params(model.params, mesh, rules)
        c_fc = params["transformer"]["h"]["0"]["mlp"]["c_fc"]["kernel"]
        wte = params["transformer"]["wte"]["embedding"]
        sharded_batch = {k: shard_batch(v, mesh, rules) for k, v in batch.items()}
        out = model(sharded_batch["input_ids"], attention_mask=sharded_batch["attention_mask"],
                    labels=sharded_batch["labels"], params=params)
        report[name] = {
            "c_fc_spec": [str(a) for a in c_fc.sharding.spec],
            "c_fc_shard_shape": list(c_fc.addressable_shards[0].data.shape),
            "wte_shard_shape": list(wte.addressable_shards[0].data.shape),
            "input_shard_shape": list(sharded_batch["input_ids"].addressable_shards[0].data.shape),
            "logits_diff": float(np.abs(np.asarray(out.logits) - np.asarray(ref.logits)).max()),
            "loss_diff": abs(float(out.loss) - float(ref.loss)),
        }
        if name == "tp":  # one optimizer step on the sharded params and batch
            state = create_train_state(model, optax.sgd(0.1), params=params)
            new_state, loss = train_step(state, sharded_batch, key)
            report[name]["train_loss_diff"] = abs(float(loss) - float(ref_loss))
            new_kernel = new_state.params["transformer"]["h"]["0"]["mlp"]["c_fc"]["kernel"]
            report[name]["updated_spec"] = [str(a) for a in new_kernel.sharding.spec]
    print(json.dumps(report))
""")


def test_sharded_forward_and_train_step_equal_unsharded():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(checkpoint_dir("lm", "safetensors"))],
                         capture_output=True, text=True, timeout=180, env=env, cwd=Path(__file__).parent)
    assert res.returncode == 0, res.stderr[-4000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    tp, dp = report["tp"], report["dp"]
    # tensor parallel: c_fc (mlp=128, embed=32) split over model=2; the vocab over model too
    assert tp["c_fc_spec"] == ["model", "None"] and tp["c_fc_shard_shape"] == [64, 32]
    assert tp["wte_shard_shape"] == [500, 32]
    # data parallel: parameters whole on each device
    assert dp["c_fc_spec"] == ["None", "None"] and dp["c_fc_shard_shape"] == [128, 32]
    for mode in (tp, dp):
        assert mode["input_shard_shape"] == [2, 12]  # batch 8 over data=4
        assert mode["logits_diff"] < 1e-5, mode
        assert mode["loss_diff"] < 1e-5, mode
    assert tp["train_loss_diff"] < 1e-5, tp
    assert tp["updated_spec"][0] == "model"  # the optimizer step keeps the layout (trailing None may be dropped)


def test_shard_params_rejects_indivisible_axis():
    import jax
    import numpy as np
    from jax.sharding import AxisType

    from gpt2_multi.flax import TENSOR_PARALLEL_RULES, make_mesh, shard_params

    mesh = make_mesh((1, 1))
    params = {"transformer": {"h": {"0": {"mlp": {"c_fc": {"kernel": np.ones((6, 4), np.float32)}}}}}}
    out = shard_params(params, mesh, TENSOR_PARALLEL_RULES)  # a 1x1 mesh divides everything
    assert out["transformer"]["h"]["0"]["mlp"]["c_fc"]["kernel"].shape == (6, 4)
    with pytest.raises(ValueError, match="mesh has axes"):
        shard_params(params, mesh, (("mlp", "tensor"),))
    with pytest.raises(KeyError, match="no logical axes for parameter c_fc/weird"):
        shard_params({"c_fc": {"weird": np.ones(3)}}, mesh)
    with pytest.raises(ValueError, match="not AxisType.Auto"):
        shard_params(params, jax.make_mesh((1, 1), ("data", "model"), axis_types=(AxisType.Explicit,) * 2))
    with pytest.raises(ValueError, match="needs 64 devices"):
        make_mesh((8, 8))


def test_the_axes_table_covers_cross_attention():
    """A plain params tree of a cross-attention model maps to logical axes by path alone."""
    from jax.sharding import PartitionSpec as P

    from gpt2_multi.flax import FlaxGPT2LMHeadModel
    from gpt2_multi.flax.sharding import param_logical_axes
    from tiny import tiny_config

    model = FlaxGPT2LMHeadModel(tiny_config(add_cross_attention=True))
    block = param_logical_axes(model.params)["transformer"]["h"]["0"]
    assert block["crossattention"]["q_attn"] == {"kernel": P("qkv", "embed"), "bias": P("qkv")}
    assert block["crossattention"]["c_attn"]["kernel"] == P("qkv", "embed")
    assert block["crossattention"]["c_proj"] == {"kernel": P("embed", "heads"), "bias": P("embed")}
    assert block["ln_cross_attn"] == {"scale": P("embed"), "bias": P("embed")}
    assert block["mlp"]["c_proj"] == {"kernel": P("embed", "mlp"), "bias": P("embed")}
    assert model.logical_axes() == param_logical_axes(model.params)


def test_rules_are_path_regexes_and_the_modules_carry_no_annotations():
    """Sharding is data outside the modules: FlaxConv1D has no axes field, init gives plain arrays, and the
    table matches ``/``-joined paths (first match wins), also under an optax state's prefixes."""
    import dataclasses

    import flax.linen as nn
    import jax
    import numpy as np
    import optax
    from jax.sharding import PartitionSpec as P

    from gpt2_multi.flax import FlaxGPT2ForSequenceClassification
    from gpt2_multi.flax.modeling import FlaxConv1D
    from gpt2_multi.flax.sharding import PARAM_AXES, axes_for, param_logical_axes
    from tiny import tiny_config

    assert [f.name for f in dataclasses.fields(FlaxConv1D) if f.name not in ("parent", "name")] == [
        "features", "config", "dtype", "param_dtype"]
    model = FlaxGPT2ForSequenceClassification(tiny_config(num_labels=3))
    variables = model.module.init(jax.random.PRNGKey(0), np.zeros((1, 4), np.int32))
    boxed = lambda x: isinstance(x, nn.meta.AxisMetadata)  # noqa: E731  (nn.Partitioned and its kin)
    leaves = jax.tree_util.tree_leaves(variables, is_leaf=boxed)
    assert leaves and not any(boxed(x) for x in leaves)
    assert all(isinstance(pattern, str) and isinstance(axes, tuple) for pattern, axes in PARAM_AXES)
    assert axes_for("transformer/h/11/attn/c_proj/kernel") == ("embed", "heads")
    assert axes_for("transformer/h/11/mlp/c_proj/kernel") == ("embed", "mlp")
    assert axes_for("score/kernel") == ("embed", "labels")
    opt = optax.adamw(1e-3).init(model.params)
    specs = param_logical_axes(opt)  # mu / nu by the same regexes, the step count replicated
    assert specs[0].mu["transformer"]["h"]["1"]["mlp"]["c_fc"]["kernel"] == P("mlp", "embed")
    assert specs[0].count == P()
    with pytest.raises(ValueError, match="transformer/wte/embedding has 1 dims"):
        param_logical_axes({"transformer": {"wte": {"embedding": np.ones(3)}}})
