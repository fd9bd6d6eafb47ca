"""The TensorFlow stack as a Keras citizen: (de)serialisation, saving, XLA, fit, tf.distribute, import isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import gpt2_multi.tf as gtf  # noqa: E402
from gpt2_multi.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from gpt2_multi.config import GPT2Config  # noqa: E402

from fixture_cases import INDEX, checkpoint_dir, golden_case  # noqa: E402

pytestmark = pytest.mark.tf

SRC = str(Path(__file__).resolve().parents[1] / "src")
TESTS = str(Path(__file__).resolve().parent)


def tiny_config(**overrides) -> GPT2Config:
    drop = ("transformers_version", "model_type") + (("id2label", "label2id") if "num_labels" in overrides else ())
    base = {k: v for k, v in INDEX["config"].items() if k not in drop}
    return GPT2Config(**{**base, **overrides})


@pytest.fixture(scope="module")
def lm():
    return gtf.TFGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"))


def ids_batch(seed=0, shape=(2, 8)):
    return np.random.default_rng(seed).integers(0, 1000, size=shape)


# ------------------------------------------------------------------------------------ configs and saving
def test_get_config_from_config_round_trip(lm):
    cfg = lm.get_config()
    json.dumps(cfg)  # serialisable
    clone = gtf.TFGPT2LMHeadModel.from_config(cfg)
    assert clone.config == lm.config
    assert [v.shape for v in clone.weights] == [v.shape for v in lm.weights]
    clone.set_weights(lm.get_weights())
    ids = ids_batch()
    np.testing.assert_allclose(clone(ids).logits.numpy(), lm(ids).logits.numpy(), atol=1e-6)


def test_keras_save_and_load_model(lm, tmp_path):
    path = tmp_path / "lm.keras"
    lm.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is gtf.TFGPT2LMHeadModel and loaded.config == lm.config
    ids = ids_batch(2)
    np.testing.assert_array_equal(loaded(ids).logits.numpy(), lm(ids).logits.numpy())


def test_keras_save_weights_and_load_weights(lm, tmp_path):
    path = tmp_path / "w.weights.h5"
    lm.save_weights(path)
    fresh = gtf.TFGPT2LMHeadModel(lm.config)
    fresh.load_weights(path)
    ids = ids_batch(3)
    np.testing.assert_array_equal(fresh(ids).logits.numpy(), lm(ids).logits.numpy())


# ------------------------------------------------------------------------------------ loading semantics
def test_loading_info_and_fresh_heads():
    # a GPT2LMHeadModel checkpoint into a sequence classifier: the body loads, `score` is new
    model, info = gtf.TFGPT2ForSequenceClassification.from_pretrained(checkpoint_dir("lm", "safetensors"), output_loading_info=True)
    assert info["missing_keys"] == ["score.weight"] and info["unexpected_keys"] == []
    lm_state = load_checkpoint(checkpoint_dir("lm", "safetensors")).tensors
    np.testing.assert_array_equal(model.state_dict()["transformer.h.1.mlp.c_fc.weight"], lm_state["transformer.h.1.mlp.c_fc.weight"])
    # a head checkpoint into the bare body: the head is reported unused
    base, info = gtf.TFGPT2Model.from_pretrained(checkpoint_dir("seqcls", "tf"), output_loading_info=True)
    assert info["unexpected_keys"] == ["score.weight"] and info["missing_keys"] == []


def test_num_labels_override_needs_ignore_mismatched_sizes():
    with pytest.raises(CheckpointError, match="score.weight"):
        gtf.TFGPT2ForSequenceClassification.from_pretrained(checkpoint_dir("seqcls", "safetensors"), num_labels=5)
    model, info = gtf.TFGPT2ForSequenceClassification.from_pretrained(
        checkpoint_dir("seqcls", "safetensors"), num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True)
    assert model.config.num_labels == 5 and model.score.kernel.shape == (32, 5)
    assert info["mismatched_keys"] == [("score.weight", (3, 32), (5, 32))]


def test_missing_body_weight_is_an_error(tmp_path):
    from gpt2_multi.checkpoint import save_checkpoint

    ckpt = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    tensors = {k: v for k, v in ckpt.tensors.items() if k != "transformer.h.0.ln_1.weight"}
    save_checkpoint(tmp_path, tensors, ckpt.config)
    with pytest.raises(CheckpointError, match="h.0.ln_1.weight"):
        gtf.TFGPT2LMHeadModel.from_pretrained(tmp_path)


def test_from_pretrained_dtype_policy():
    model = gtf.TFGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"), dtype="mixed_bfloat16")
    assert model.weights[0].dtype == "float32"
    out = model(ids_batch(4))
    assert out.logits.dtype == tf.bfloat16
    ref = gtf.TFGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"))(ids_batch(4)).logits.numpy()
    np.testing.assert_allclose(tf.cast(out.logits, tf.float32).numpy(), ref, atol=0.1)
    bf16 = gtf.TFGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"), dtype="bfloat16")
    assert {v.dtype for v in bf16.weights} == {"bfloat16"}
    np.testing.assert_allclose(tf.cast(bf16(ids_batch(4)).logits, tf.float32).numpy(), ref, atol=0.1)


@pytest.mark.parametrize("tied", [True, False])
def test_resize_token_embeddings_keeps_rows_names_and_round_trips(tmp_path, tied):
    model = gtf.TFGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"), tie_word_embeddings=tied)
    ids = np.array([[5, 6, 7, 8]])
    before = model(ids).logits.numpy()
    names = [v.path for v in model.weights]
    model.resize_token_embeddings(1003)
    assert model.config.vocab_size == 1003 and [v.path for v in model.weights] == names
    assert model.get_input_embeddings().embeddings.shape == (1003, 32)
    # the old rows give the old logits; a 1003-wide LM head product may be blocked differently from a 1000-wide
    # one (which kernel depends on the CPU: with AVX2 only, the last bit of 0.6% of them moves)
    np.testing.assert_allclose(model(ids).logits.numpy()[..., :1000], before, rtol=1e-6, atol=1e-7)
    assert model(np.array([[1002, 3]])).logits.shape == (1, 2, 1003)
    model.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)
    new_ids = np.array([[1, 1002, 3, 1001]] * 4)
    model.fit(tf.data.Dataset.from_tensor_slices({"input_ids": new_ids, "labels": new_ids}).batch(2), verbose=0)
    model.save_pretrained(tmp_path)
    again = gtf.TFGPT2LMHeadModel.from_pretrained(tmp_path)
    np.testing.assert_array_equal(again(new_ids).logits.numpy(), model(new_ids).logits.numpy())
    model.resize_token_embeddings(990)  # shrinking keeps the first rows
    np.testing.assert_array_equal(model.transformer.wte.embeddings.numpy(), again.transformer.wte.embeddings.numpy()[:990])


# ------------------------------------------------------------------------------------ XLA
def test_jit_compile_forward_equals_eager(lm):
    case = golden_case("lm_right_pad")
    ids = tf.constant(case.inputs["input_ids"])
    mask = tf.constant(case.inputs["attention_mask"])
    eager = lm(ids, attention_mask=mask, use_cache=True)
    fn = tf.function(lambda i, m: lm.call(i, attention_mask=m, use_cache=True), jit_compile=True)
    xla = fn(ids, mask)
    assert isinstance(xla, gtf.TFCausalLMOutputWithCrossAttentions)
    np.testing.assert_allclose(xla.logits.numpy(), eager.logits.numpy(), atol=1e-5)
    for a, b in zip(xla.past_key_values, eager.past_key_values):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    # and against HF's numbers
    valid = case.inputs["attention_mask"].astype(bool)
    np.testing.assert_allclose(xla.logits.numpy()[valid], case.expected["logits"][valid], atol=1e-4)


def test_jit_compile_cached_decode_step_equals_eager(lm):
    ids = ids_batch(5, (2, 6))
    past = lm(ids, use_cache=True).past_key_values
    step = tf.function(lambda i, p: lm.call(i, past_key_values=p, use_cache=True), jit_compile=True)
    nxt = ids_batch(6, (2, 1))
    xla = step(tf.constant(nxt), past)
    eager = lm(nxt, past_key_values=past, use_cache=True)
    np.testing.assert_allclose(xla.logits.numpy(), eager.logits.numpy(), atol=1e-5)


def test_tf_function_with_dynamic_shapes(lm):
    spec = tf.TensorSpec([None, None], tf.int32)
    fn = tf.function(lambda i, m: lm(i, attention_mask=m).logits, input_signature=[spec, spec])
    for shape in [(3, 7), (1, 4)]:
        ids = ids_batch(8, shape).astype(np.int32)
        mask = np.ones_like(ids)
        mask[0, -2:] = 0
        np.testing.assert_allclose(fn(ids, mask).numpy(), lm(ids, attention_mask=mask).logits.numpy(), atol=1e-5)


def test_saved_model_serving_signature(lm, tmp_path):
    tf.saved_model.save(lm, str(tmp_path / "sm"))
    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    ids = ids_batch(9, (3, 7)).astype(np.int32)
    out = serve(input_ids=tf.constant(ids))
    assert set(out) == {"logits"}
    np.testing.assert_allclose(out["logits"].numpy(), lm(ids).logits.numpy(), atol=1e-5)


def test_jit_compile_every_head():
    # the heads with their own gathers / reshapes (token classification is a plain dense layer)
    for head, cls in [("double", gtf.TFGPT2DoubleHeadsModel), ("seqcls", gtf.TFGPT2ForSequenceClassification),
                      ("qa", gtf.TFGPT2ForQuestionAnswering)]:
        model = cls.from_pretrained(checkpoint_dir(head, "safetensors"))
        case = golden_case("double_heads" if head == "double" else head)
        inputs = {k: tf.constant(v) for k, v in case.inputs.items()}
        xla = tf.function(lambda kw: model.call(**kw, **case.flags), jit_compile=True)(inputs)  # noqa: B023
        eager = model(**inputs, **case.flags)
        assert set(eager.keys()) == set(case.expected), head
        for key in eager.keys():
            np.testing.assert_allclose(np.asarray(xla[key]), np.asarray(eager[key]), atol=1e-5, err_msg=f"{head}:{key}")
            np.testing.assert_allclose(np.asarray(xla[key]), case.expected[key], atol=1e-4, err_msg=f"{head}:{key}")


# ------------------------------------------------------------------------------------ fit
def lm_dataset(n=16, t=8, seed=0, batch=4):
    ids = np.random.default_rng(seed).integers(0, 50, size=(n, t)).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices({"input_ids": ids, "labels": ids}).batch(batch)


def test_fit_lowers_the_models_own_loss():
    keras.utils.set_random_seed(0)
    model = gtf.TFGPT2LMHeadModel(tiny_config())
    data = lm_dataset()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))  # no loss=: the model's own
    before = model.evaluate(data, verbose=0)
    history = model.fit(data, epochs=4, verbose=0)
    after = model.evaluate(data, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] and after < before - 0.5
    # evaluate reports the same mean loss as a direct call
    direct = np.mean([model(b["input_ids"], labels=b["labels"]).loss.numpy() for b in data])
    np.testing.assert_allclose(after, direct, rtol=1e-4)


def test_fit_every_head_with_labels_in_inputs():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 1000, size=(8, 6)).astype(np.int32)
    cases = [
        (gtf.TFGPT2ForSequenceClassification, {"input_ids": ids, "labels": rng.integers(0, 3, 8)}),
        (gtf.TFGPT2ForTokenClassification, {"input_ids": ids, "labels": rng.integers(0, 3, (8, 6))}),
        (gtf.TFGPT2ForQuestionAnswering, {"input_ids": ids, "start_positions": rng.integers(0, 6, 8), "end_positions": rng.integers(0, 6, 8)}),
        (gtf.TFGPT2DoubleHeadsModel, {"input_ids": ids.reshape(4, 2, 6), "mc_token_ids": np.full((4, 2), 5),
                                       "labels": ids.reshape(4, 2, 6), "mc_labels": rng.integers(0, 2, 4)}),
    ]
    for cls, inputs in cases:
        model = cls(tiny_config())
        # eager steps: the compiled (XLA) train step is covered by the LM test; this one checks each head's loss
        model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)
        data = tf.data.Dataset.from_tensor_slices(inputs).batch(4)
        losses = model.fit(data, epochs=3, verbose=0).history["loss"]
        assert np.isfinite(losses).all() and losses[-1] < losses[0], cls.__name__


def test_fit_with_compiled_keras_loss_uses_y():
    keras.utils.set_random_seed(2)
    model = gtf.TFGPT2ForSequenceClassification(tiny_config())
    ids = np.random.default_rng(2).integers(1, 1000, size=(8, 6)).astype(np.int32)
    y = np.random.default_rng(3).integers(0, 3, 8)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    losses = model.fit({"input_ids": ids}, y, batch_size=4, epochs=3, verbose=0).history["loss"]
    assert losses[-1] < losses[0]


def test_predict_returns_concatenated_outputs(lm):
    ids = ids_batch(7, (6, 5))
    pred = lm.predict(ids, batch_size=4, verbose=0)
    assert set(pred) == {"logits"}
    np.testing.assert_allclose(pred["logits"], lm(ids).logits.numpy(), atol=1e-5)
    pred = lm.predict({"input_ids": ids, "labels": ids}, batch_size=4, verbose=0)  # per-batch losses are dropped
    assert set(pred) == {"logits"}


# ------------------------------------------------------------------------------------ subprocess tests
def run_python(code: str, timeout: int = 300) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, TESTS]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_mirrored_strategy_fit_gives_the_same_weights_and_import_is_isolated():
    # One subprocess for both (TF start-up is the cost): logical devices must be set before TF
    # initialises them, and sys.modules must be inspected before anything else imports a framework.
    out = run_python("""
        import sys
        import gpt2_multi.tf as gtf
        print("LOADED", [m for m in ("torch", "jax", "flax") if m in sys.modules])
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from test_tf_keras import tiny_config

        ids = np.random.default_rng(0).integers(0, 1000, size=(16, 8)).astype(np.int32)
        data = lambda: tf.data.Dataset.from_tensor_slices({"input_ids": ids, "labels": ids}).batch(8)

        def train(strategy):
            with strategy.scope():
                keras.utils.set_random_seed(0)
                model = gtf.TFGPT2LMHeadModel(tiny_config())
                model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
            start = [w.copy() for w in model.get_weights()]
            loss = model.fit(data(), epochs=2, verbose=0).history["loss"]
            return start, model.get_weights(), loss

        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert mirrored.num_replicas_in_sync == 2
        s0, w0, l0 = train(tf.distribute.get_strategy())
        s1, w1, l1 = train(mirrored)
        assert all(np.array_equal(a, b) for a, b in zip(s0, s1)), "same initial weights"
        moved = max(float(np.abs(a - b).max()) for a, b in zip(s0, w0))
        diff = max(float(np.abs(a - b).max()) for a, b in zip(w0, w1))
        print("RESULT", moved, diff, l0, l1)
    """)
    assert "LOADED []" in out, out  # importing the TF stack imported no other framework
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    moved, diff = (float(v) for v in line.split()[1:3])
    assert moved > 1e-3, "training moved the weights"
    assert diff < 1e-5, f"MirroredStrategy weights differ by {diff}"
    losses = line.split(" ", 3)[3]
    assert losses.count("[") == 2


def test_import_with_another_keras_backend_is_a_clear_error():
    env = {**os.environ, "PYTHONPATH": SRC, "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-c", "import gpt2_multi.tf"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0 and "KERAS_BACKEND" in proc.stderr and "tensorflow" in proc.stderr


@pytest.mark.slow
def test_load_peak_memory_is_under_one_and_a_half_times_the_weights():
    # A mid-sized model (95 MB) so that the fixed costs of the TF runtime do not dominate; the full
    # gpt2-small measurement is benchmarks/tf_load_memory.py (1.14x).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import tf_load_memory
    finally:
        sys.path.pop(0)
    code = tf_load_memory.main(["--n-layer", "6", "--n-embd", "512", "--n-head", "8", "--vocab-size", "8192", "--max-ratio", "1.5"])
    assert code == 0


@pytest.mark.parametrize("head", ["lm", "double"])
def test_keras_export_serves_the_outputs(head, tmp_path):
    """``model.export`` (Keras' SavedModel export) serves every output but the cache, equal to the model's."""
    cls = gtf.TFGPT2LMHeadModel if head == "lm" else gtf.TFGPT2DoubleHeadsModel
    model = cls.from_pretrained(checkpoint_dir(head, "safetensors"))
    model.export(str(tmp_path / "exported"))
    loaded = tf.saved_model.load(str(tmp_path / "exported"))
    ids = ids_batch(4, (3, 7) if head == "lm" else (2, 3, 7)).astype(np.int32)
    expected = model(ids, use_cache=False)
    for out in (loaded.serve(tf.constant(ids)), loaded.signatures["serving_default"](input_ids=tf.constant(ids))):
        assert set(out) == set(expected.keys()) == ({"logits"} if head == "lm" else {"logits", "mc_logits"})
        for key in out:
            np.testing.assert_allclose(out[key].numpy(), expected[key].numpy(), atol=1e-5, err_msg=key)


def test_keras_export_with_named_inputs(lm, tmp_path):
    spec = tf.TensorSpec([None, None], tf.int32)
    lm.export(str(tmp_path / "exported"), input_signature=[{"input_ids": spec, "attention_mask": spec}])
    loaded = tf.saved_model.load(str(tmp_path / "exported"))  # keep it: its variables die with it
    ids = ids_batch(5, (2, 6)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, :2] = 0  # left padding changes the logits of row 1
    out = loaded.serve({"input_ids": tf.constant(ids), "attention_mask": tf.constant(mask)})
    np.testing.assert_allclose(out["logits"].numpy(), lm(ids, attention_mask=mask).logits.numpy(), atol=1e-5)
    assert np.abs(out["logits"].numpy()[1] - lm(ids).logits.numpy()[1]).max() > 1e-3
    with pytest.raises(ValueError, match="naming each input"):
        lm.export(str(tmp_path / "bad"), input_signature=[spec, spec])


# ------------------------------------------------------------------ HF's TF habits (issue 17)
def test_save_pretrained_saved_model_true_writes_a_servable_savedmodel(lm, tmp_path):
    written = lm.save_pretrained(tmp_path, saved_model=True)
    target = tmp_path / "saved_model" / "1"
    assert target in written and (target / "saved_model.pb").is_file() and (tmp_path / "model.safetensors").is_file()
    assert not list((tmp_path / "saved_model").glob(".*.tmp"))
    serve = tf.saved_model.load(str(target)).signatures["serving_default"]
    ids = ids_batch(3, (2, 5)).astype(np.int32)
    np.testing.assert_allclose(serve(input_ids=tf.constant(ids))["logits"].numpy(), lm(ids).logits.numpy(), atol=1e-5)


def test_class_attributes_dummy_inputs_and_from_config_forms(lm):
    assert gtf.TFGPT2LMHeadModel.main_input_name == "input_ids"
    assert gtf.TFGPT2LMHeadModel.config_class is GPT2Config
    assert lm(lm.dummy_inputs).logits.shape == (3, 5, lm.config.vocab_size)
    double = gtf.TFGPT2DoubleHeadsModel(lm.config)
    assert double(double.dummy_inputs).logits.shape[:3] == (2, 2, 5)
    for form in (lm.config, lm.config.to_dict(), lm.get_config()):  # HF's config object, HF's flat dict, Keras' own
        rebuilt = gtf.TFGPT2LMHeadModel.from_config(form)
        assert rebuilt.config.to_dict() == lm.config.to_dict()
    assert gtf.TFGPT2LMHeadModel.from_config(lm.config.to_dict(), n_layer=1).config.n_layer == 1


def test_set_input_embeddings_copies_into_the_named_variable(tmp_path):
    model = gtf.TFGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"))
    wte = model.get_input_embeddings()
    assert isinstance(wte, keras.layers.Embedding)
    new = np.random.default_rng(0).normal(size=(model.config.vocab_size + 2, model.config.n_embd)).astype(np.float32)
    layer = keras.layers.Embedding(*new.shape)
    layer.build((None,))
    layer.embeddings.assign(new)
    model.set_input_embeddings(layer)
    assert model.config.vocab_size == new.shape[0] and model.get_input_embeddings() is wte
    np.testing.assert_array_equal(wte.embeddings.numpy(), new)
    model.save_pretrained(tmp_path)
    from gpt2_multi.checkpoint import load_checkpoint

    np.testing.assert_array_equal(load_checkpoint(tmp_path).tensors["transformer.wte.weight"], new)
    with pytest.raises(ValueError, match=r"needs \(vocab, n_embd="):
        model.set_input_embeddings(np.zeros((4, 3), np.float32))
