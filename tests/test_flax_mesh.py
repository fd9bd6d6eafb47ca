"""Training on a ("data", "model") mesh of 4 simulated CPU devices: one optax AdamW step under ``jax.jit`` with
explicit in/out shardings (from the path-regex rules of :mod:`gpt2_multi.flax.sharding`) equals the same step
on one device, and the sharded state saved with Orbax restores sharded and unsharded.

JAX fixes its device count when it starts, so the work runs in a subprocess with XLA_FLAGS set (as
``test_flax_sharding.py`` does); it prints one JSON report that the tests below read."""

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
pytest.importorskip("optax")
pytest.importorskip("orbax.checkpoint")

SCRIPT = textwrap.dedent(r"""
    import json, sys
    import jax, numpy as np, optax
    from jax.sharding import NamedSharding, PartitionSpec as P, SingleDeviceSharding
    from gpt2_multi.flax import TENSOR_PARALLEL_RULES as RULES, FlaxGPT2LMHeadModel, make_mesh
    from gpt2_multi.flax.checkpointing import restore_state, save_state
    from gpt2_multi.flax.sharding import batch_sharding, param_shardings, shard_params
    from gpt2_multi.flax.training import create_train_state, train_step
    from tiny import tiny_config

    assert jax.device_count() == 4, jax.devices()
    mesh = make_mesh((2, 2), ("data", "model"))
    model = FlaxGPT2LMHeadModel(tiny_config(vocab_size=100, n_positions=32), seed=0)  # tied LM head
    # lr / eps = 10: AdamW's first step divides the gradient by |g| + eps, so near g = 0 (c_attn's key bias has
    # a zero gradient in exact arithmetic) the default eps=1e-8 would blow float32 rounding up to ~1e-5.
    tx = optax.adamw(1e-3, eps=1e-4, weight_decay=0.1)
    ids = np.random.RandomState(0).randint(0, 100, size=(4, 12)).astype(np.int32)
    batch = {"input_ids": ids, "labels": ids}
    rng = jax.random.PRNGKey(0)

    # one device: the reference
    ref_state, ref_loss = train_step(create_train_state(model, tx), batch, rng)

    # the mesh: the whole TrainState's shardings from the rules (params, AdamW's mu and nu by path, counts replicated)
    like = jax.eval_shape(lambda: create_train_state(model, tx))
    state_shardings = param_shardings(like, mesh, RULES)
    replicated = NamedSharding(mesh, P())
    batch_shardings = {k: batch_sharding(mesh, 2, RULES) for k in batch}
    init = jax.jit(lambda params: create_train_state(model, tx, params=params), out_shardings=state_shardings)
    state = init(shard_params(model.params, mesh, RULES))
    step = jax.jit(train_step, in_shardings=(state_shardings, batch_shardings, replicated),
                   out_shardings=(state_shardings, replicated))
    new_state, loss = step(state, batch, rng)

    def flat(tree):
        return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}

    def max_diff(a, b):
        a, b = flat(a), flat(b)
        assert a.keys() == b.keys()
        return max(float(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)).max()) for k in a)

    def shard(x):
        return {"spec": [str(a) for a in x.sharding.spec], "shard_shape": list(x.addressable_shards[0].data.shape)}

    block = new_state.params["transformer"]["h"]["0"]
    adam = new_state.opt_state[0]
    report = {
        "params": sorted(flat(new_state.params)),
        "c_attn": shard(block["attn"]["c_attn"]["kernel"]),
        "attn_c_proj": shard(block["attn"]["c_proj"]["kernel"]),
        "c_fc": shard(block["mlp"]["c_fc"]["kernel"]),
        "mlp_c_proj": shard(block["mlp"]["c_proj"]["kernel"]),
        "wte": shard(new_state.params["transformer"]["wte"]["embedding"]),
        "wpe": shard(new_state.params["transformer"]["wpe"]["embedding"]),
        "ln_f": shard(new_state.params["transformer"]["ln_f"]["scale"]),
        "mu_c_fc": shard(adam.mu["transformer"]["h"]["0"]["mlp"]["c_fc"]["kernel"]),
        "count": shard(adam.count),
        "batch": shard(jax.device_put(ids, batch_shardings["input_ids"])),
        "loss": float(ref_loss),
        "loss_diff": abs(float(loss) - float(ref_loss)),
        "params_diff": max_diff(new_state.params, ref_state.params),
        "mu_diff": max_diff(adam.mu, ref_state.opt_state[0].mu),
        "nu_diff": max_diff(adam.nu, ref_state.opt_state[0].nu),
        "moved": max_diff(new_state.params, model.params),
    }

    # Orbax: save the sharded state, restore it sharded (same rules) and unsharded (one device)
    path = sys.argv[1]
    save_state(path, new_state)
    restored = restore_state(path, like, mesh, RULES)
    report["restored_diff"] = max_diff(restored, new_state)
    report["restored_shardings_match"] = all(
        r.sharding.is_equivalent_to(s, r.ndim) for r, s in zip(jax.tree_util.tree_leaves(restored),
                                                               jax.tree_util.tree_leaves(state_shardings)))
    report["restored_c_fc"] = shard(restored.params["transformer"]["h"]["0"]["mlp"]["c_fc"]["kernel"])
    report["restored_step"] = int(restored.step)
    whole = restore_state(path, like)
    report["unsharded_diff"] = max_diff(whole, new_state)
    report["unsharded_on_one_device"] = all(isinstance(x.sharding, SingleDeviceSharding) and len(x.devices()) == 1
                                            for x in jax.tree_util.tree_leaves(whole))
    # the restored state trains on: its next step equals the original's
    ids2 = np.random.RandomState(1).randint(0, 100, size=(4, 12)).astype(np.int32)
    batch2 = {"input_ids": ids2, "labels": ids2}
    report["next_step_diff"] = max_diff(step(restored, batch2, rng)[0].params, step(new_state, batch2, rng)[0].params)
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    ckpt = tmp_path_factory.mktemp("orbax") / "state"
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(ckpt)], capture_output=True, text=True, timeout=240,
                         env=env, cwd=Path(__file__).parent)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_rules_shard_params_optimizer_state_and_batch(report):
    # tiny config: n_embd 32, qkv 96, mlp 128, vocab 100, positions 32; mesh data=2 x model=2
    assert "['transformer']['wte']['embedding']" in report["params"]
    assert not any("lm_head" in p for p in report["params"])  # tied: the head is wte
    assert report["c_attn"] == {"spec": ["model", "None"], "shard_shape": [48, 32]}  # column-parallel
    assert report["c_fc"] == {"spec": ["model", "None"], "shard_shape": [64, 32]}
    assert report["attn_c_proj"]["spec"] == ["None", "model"] and report["attn_c_proj"]["shard_shape"] == [32, 16]  # row-parallel
    assert report["mlp_c_proj"]["spec"] == ["None", "model"] and report["mlp_c_proj"]["shard_shape"] == [32, 64]
    assert report["wte"]["spec"][0] == "model" and report["wte"]["shard_shape"] == [50, 32]  # vocab over model
    assert report["wpe"]["shard_shape"] == [32, 32] and report["ln_f"]["shard_shape"] == [32]  # replicated
    assert report["mu_c_fc"] == report["c_fc"]  # AdamW's moments are matched by the same path regexes
    assert report["count"] == {"spec": [], "shard_shape": []}
    assert report["batch"]["spec"][0] == "data" and report["batch"]["shard_shape"] == [2, 12]


def test_sharded_adamw_step_equals_single_device_step(report):
    assert report["moved"] > 5e-4  # the step moved the weights (lr 1e-3)
    assert report["loss_diff"] < 1e-6 + 1e-5 * report["loss"], report  # measured 4.8e-7 on a loss of ~4.6
    assert report["params_diff"] < 1e-6, report  # measured 1.4e-7
    assert report["mu_diff"] < 1e-6 and report["nu_diff"] < 1e-8, report


def test_orbax_restores_sharded_and_unsharded(report):
    assert report["restored_diff"] == 0.0 and report["restored_shardings_match"]
    assert report["restored_c_fc"] == report["c_fc"] and report["restored_step"] == 1
    assert report["unsharded_diff"] == 0.0 and report["unsharded_on_one_device"]
    assert report["next_step_diff"] == 0.0
