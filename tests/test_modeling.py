"""Tests of bert_tf.modeling: shapes, masking, tied MLM head, losses, serialization, mixed precision,
and agreement with keras-hub's independent BertBackbone."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.configs import BertConfig
from bert_tf.modeling import (BertClassifier, BertEncoder, BertPretrainer, pretraining_losses)
from bert_tf.modeling.layers import get_activation

B, S, P = 3, 12, 4


def tiny_config(**overrides):
  values = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=48, max_position_embeddings=16, type_vocab_size=2)
  values.update(overrides)
  return BertConfig(**values)


def randomize(model, seed=0):
  """Gives every weight (biases, LayerNorm gamma/beta included) a distinct random value."""
  rng = np.random.default_rng(seed)
  for v in model.weights:
    base = 1.0 if v.path.endswith("gamma") else 0.0
    v.assign(base + rng.normal(0.0, 0.2, v.shape).astype("float32"))


def make_features(config, seed=1):
  rng = np.random.default_rng(seed)
  lengths = np.array([S, 7, 3])
  mask = (np.arange(S)[None, :] < lengths[:, None]).astype("int32")
  ids = rng.integers(1, config.vocab_size, (B, S)).astype("int32") * mask
  segments = ((np.arange(S)[None, :] >= (lengths // 2)[:, None]) * mask).astype("int32")
  positions = np.stack([np.sort(rng.choice(max(n, P), P, replace=False)) % n for n in lengths])
  weights = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]], "float32")
  return dict(input_ids=ids, input_mask=mask, segment_ids=segments,
              masked_lm_positions=positions.astype("int32"),
              masked_lm_ids=rng.integers(0, config.vocab_size, (B, P)).astype("int32"),
              masked_lm_weights=weights,
              next_sentence_labels=np.array([[0], [1], [1]], "int32"))


def np_layer_norm(x, gamma, beta, eps=1e-12):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * gamma + beta


def np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_output_shapes_and_dtypes():
  config = tiny_config()
  model = BertPretrainer(config)
  features = make_features(config)
  out = model(features, training=False)
  assert out["sequence_output"].shape == (B, S, 32)
  assert out["pooled_output"].shape == (B, 32)
  assert out["mlm_logits"].shape == (B, P, config.vocab_size)
  assert out["nsp_logits"].shape == (B, 2)
  assert all(out[k].dtype == tf.float32 for k in out)
  assert isinstance(model.encoder, BertEncoder)

  encoder = BertEncoder(config, output_all_layers=True)
  enc = encoder({k: features[k] for k in ("input_ids", "input_mask", "segment_ids")})
  assert len(enc["encoder_outputs"]) == config.num_hidden_layers
  np.testing.assert_array_equal(enc["encoder_outputs"][-1], enc["sequence_output"])

  classifier = BertClassifier(config, num_classes=1)
  logits = classifier(features, training=False)
  assert logits.shape == (B, 1) and logits.dtype == tf.float32


def test_sequence_longer_than_position_table_is_refused():
  from bert_tf.errors import UsageError
  encoder = BertEncoder(tiny_config(max_position_embeddings=8))
  with pytest.raises(UsageError, match="max_position_embeddings"):
    encoder({"input_ids": np.ones([2, 9], "int32")})


def test_padding_is_invisible_to_real_tokens():
  config = tiny_config()
  encoder = BertEncoder(config)
  randomize(encoder)
  features = make_features(config)
  inputs = {k: features[k] for k in ("input_ids", "input_mask", "segment_ids")}
  base = encoder(inputs)
  # Change the token ids of padding positions only: real positions must not notice.
  noisy = dict(inputs, input_ids=np.where(inputs["input_mask"] == 1, inputs["input_ids"], 5))
  other = encoder(noisy)
  mask = inputs["input_mask"].astype(bool)
  np.testing.assert_allclose(np.asarray(base["sequence_output"])[mask],
                             np.asarray(other["sequence_output"])[mask], atol=1e-6)
  np.testing.assert_allclose(base["pooled_output"], other["pooled_output"], atol=1e-6)
  # Without the mask the same change is visible: the mask is what hides the padding.
  unmasked = encoder(dict(inputs, input_mask=np.ones_like(inputs["input_mask"])))
  unmasked_noisy = encoder(dict(noisy, input_mask=np.ones_like(inputs["input_mask"])))
  assert np.abs(np.asarray(unmasked["sequence_output"])[1, :7]
                - np.asarray(unmasked_noisy["sequence_output"])[1, :7]).max() > 1e-3


def test_mlm_head_is_tied_and_matches_numpy():
  config = tiny_config(hidden_act="gelu")
  model = BertPretrainer(config)
  randomize(model)
  features = make_features(config)
  out = model(features, training=False)
  vocab_shaped = [v for v in model.weights if tuple(v.shape) == (config.vocab_size, 32)]
  assert len(vocab_shaped) == 1  # one table serves the input embedding and the output projection

  seq = np.asarray(out["sequence_output"])
  gathered = np.take_along_axis(seq, features["masked_lm_positions"][:, :, None], axis=1)
  head = model.masked_lm
  x = gathered @ np.asarray(head.transform.kernel) + np.asarray(head.transform.bias)
  x = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
  x = np_layer_norm(x, np.asarray(head.layer_norm.gamma), np.asarray(head.layer_norm.beta))
  expected = x @ np.asarray(model.encoder.word_embeddings).T + np.asarray(head.output_bias)
  np.testing.assert_allclose(out["mlm_logits"], expected, atol=1e-4)

  # Changing the word table changes the MLM logits directly.
  model.encoder.word_embeddings.assign(model.encoder.word_embeddings * 2.0)
  assert not np.allclose(model(features, training=False)["mlm_logits"], out["mlm_logits"])


def test_pretraining_losses_match_numpy():
  config = tiny_config()
  model = BertPretrainer(config)
  randomize(model, seed=3)
  features = make_features(config)
  out = model(features, training=False)
  losses = pretraining_losses(features, out)

  log_probs = np_log_softmax(np.asarray(out["mlm_logits"], "float64"))
  per_pred = -np.take_along_axis(log_probs, features["masked_lm_ids"][:, :, None], -1)[..., 0]
  w = features["masked_lm_weights"]
  mlm = (w * per_pred).sum() / (w.sum() + 1e-5)
  nsp_lp = np_log_softmax(np.asarray(out["nsp_logits"], "float64"))
  nsp = -np.take_along_axis(nsp_lp, features["next_sentence_labels"], -1).mean()
  np.testing.assert_allclose(losses["masked_lm_loss"], mlm, rtol=1e-5)
  np.testing.assert_allclose(losses["next_sentence_loss"], nsp, rtol=1e-5)
  np.testing.assert_allclose(losses["loss"], mlm + nsp, rtol=1e-5)
  assert all(v.dtype == tf.float32 and v.shape == () for v in losses.values())


@pytest.mark.parametrize("name", ["gelu", "gelu_exact", "relu", "tanh", "linear"])
def test_activations(name):
  x = np.linspace(-4, 4, 41).astype("float32")
  expected = {
      "gelu": 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
      "gelu_exact": 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))),
      "relu": np.maximum(x, 0), "tanh": np.tanh(x), "linear": x}[name]
  np.testing.assert_allclose(get_activation(name)(tf.constant(x)), expected, atol=1e-6)


def test_dropout_only_in_training():
  config = tiny_config(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)
  model = BertPretrainer(config)
  features = make_features(config)
  a = model(features, training=False)["sequence_output"]
  b = model(features, training=False)["sequence_output"]
  c = model(features, training=True)["sequence_output"]
  np.testing.assert_array_equal(a, b)
  assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3


def test_get_config_round_trip():
  config = tiny_config(hidden_act="relu")
  features = make_features(config)
  for model in (BertPretrainer(config), BertClassifier(config, num_classes=3, dropout_rate=0.05),
                BertEncoder(config, output_all_layers=True)):
    randomize(model, seed=5)
    clone = type(model).from_config(model.get_config())
    assert clone.bert_config == config
    assert [tuple(v.shape) for v in clone.weights] == [tuple(v.shape) for v in model.weights]
    clone.set_weights(model.get_weights())
    inputs = features if not isinstance(model, BertEncoder) else {
        k: features[k] for k in ("input_ids", "input_mask", "segment_ids")}
    got, want = clone(inputs, training=False), model(inputs, training=False)
    for g, w in zip(tf.nest.flatten(got), tf.nest.flatten(want)):
      np.testing.assert_array_equal(g, w)
  assert clone.output_all_layers


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_forward(policy):
  config = tiny_config()
  features = make_features(config)
  reference = BertPretrainer(config)
  randomize(reference, seed=7)
  want = reference(features, training=False)
  keras.mixed_precision.set_global_policy(policy)
  try:
    model = BertPretrainer(config)
    classifier = BertClassifier(config, num_classes=2)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert all(v.dtype == "float32" for v in model.weights)
  model.set_weights(reference.get_weights())
  got = model(features, training=False)
  compute = policy.split("_")[1]
  assert got["sequence_output"].dtype == compute
  assert got["mlm_logits"].dtype == tf.float32 and got["nsp_logits"].dtype == tf.float32
  assert classifier(features).dtype == tf.float32
  np.testing.assert_allclose(got["mlm_logits"], want["mlm_logits"], atol=0.15, rtol=0.05)
  losses = pretraining_losses(features, got)
  assert losses["loss"].dtype == tf.float32 and np.isfinite(losses["loss"])
  np.testing.assert_allclose(losses["loss"], pretraining_losses(features, want)["loss"], rtol=0.05)


def test_agrees_with_keras_hub_backbone():
  keras_hub = pytest.importorskip("keras_hub")
  config = tiny_config(hidden_act="gelu")  # keras-hub's BERT uses the tanh-approximated GELU
  ours = BertEncoder(config)
  randomize(ours, seed=11)
  heads, hidden = config.num_attention_heads, config.hidden_size
  d = hidden // heads
  hub = keras_hub.models.BertBackbone(
      vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers, num_heads=heads,
      hidden_dim=hidden, intermediate_dim=config.intermediate_size,
      max_sequence_length=config.max_position_embeddings, num_segments=config.type_vocab_size,
      dropout=0.0)
  e = ours.embeddings
  hub.get_layer("token_embedding").embeddings.assign(e.word_embeddings)
  hub.get_layer("position_embedding").position_embeddings.assign(e.position_embeddings)
  hub.get_layer("segment_embedding").embeddings.assign(e.token_type_embeddings)
  hub.get_layer("embeddings_layer_norm").gamma.assign(e.layer_norm.gamma)
  hub.get_layer("embeddings_layer_norm").beta.assign(e.layer_norm.beta)
  for i, block in enumerate(ours.blocks):
    hub_block = hub.get_layer(f"transformer_layer_{i}")
    mha = hub_block._self_attention_layer
    for ours_dense, hub_dense in ((block.attention.query, mha._query_dense),
                                  (block.attention.key, mha._key_dense),
                                  (block.attention.value, mha._value_dense)):
      hub_dense.kernel.assign(np.reshape(ours_dense.kernel, [hidden, heads, d]))
      hub_dense.bias.assign(np.reshape(ours_dense.bias, [heads, d]))
    mha._output_dense.kernel.assign(
        np.reshape(block.attention.output_dense.kernel, [heads, d, hidden]))
    mha._output_dense.bias.assign(block.attention.output_dense.bias)
    pairs = ((hub_block._self_attention_layer_norm, block.attention_layer_norm),
             (hub_block._feedforward_layer_norm, block.output_layer_norm))
    for hub_norm, our_norm in pairs:
      hub_norm.gamma.assign(our_norm.gamma)
      hub_norm.beta.assign(our_norm.beta)
    for hub_dense, ours_dense in ((hub_block._feedforward_intermediate_dense, block.intermediate),
                                  (hub_block._feedforward_output_dense, block.output_dense)):
      hub_dense.kernel.assign(ours_dense.kernel)
      hub_dense.bias.assign(ours_dense.bias)
  hub.get_layer("pooled_dense").kernel.assign(ours.pooler.kernel)
  hub.get_layer("pooled_dense").bias.assign(ours.pooler.bias)

  features = make_features(config)
  mine = ours({k: features[k] for k in ("input_ids", "input_mask", "segment_ids")})
  theirs = hub({"token_ids": features["input_ids"], "segment_ids": features["segment_ids"],
                "padding_mask": features["input_mask"]})
  mask = features["input_mask"].astype(bool)
  np.testing.assert_allclose(np.asarray(mine["sequence_output"])[mask],
                             np.asarray(theirs["sequence_output"])[mask], atol=1e-5)
  np.testing.assert_allclose(mine["pooled_output"], theirs["pooled_output"], atol=1e-5)


def test_last_block_at_selected_positions_matches_full_sequence():
  config = tiny_config()
  encoder = BertEncoder(config)
  randomize(encoder, seed=13)
  features = make_features(config)
  inputs = {k: features[k] for k in ("input_ids", "input_mask", "segment_ids")}
  positions = features["masked_lm_positions"]
  out = encoder(inputs, output_positions=positions)
  full = np.asarray(out["sequence_output"])
  np.testing.assert_allclose(out["gathered_output"],
                             np.take_along_axis(full, positions[:, :, None], axis=1), atol=1e-5)
  np.testing.assert_allclose(out["pooled_output"], encoder(inputs)["pooled_output"], atol=1e-5)


def test_skipping_padding_gives_the_padded_results_at_real_tokens():
  # BertEncoder(skip_padding=True) runs the blocks on the real tokens only. Outputs, heads, losses
  # and every gradient must equal those of the padded computation; at padding the sequence output
  # is zero. Batches: varied lengths, plus a row with no real token at all (an all-padding
  # example, as evaluation sets are padded with) whose masked positions then read zeros.
  config = tiny_config(num_hidden_layers=3, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0)
  padded, unpadded = BertPretrainer(config), BertPretrainer(config)
  randomize(padded, seed=21)
  unpadded.set_weights(padded.get_weights())
  unpadded.encoder.skip_padding = True
  unpadded.encoder.output_all_layers = padded.encoder.output_all_layers = True
  features = make_features(config)
  empty_row = dict(features, input_mask=features["input_mask"].copy())
  empty_row["input_mask"][2] = 0
  for batch in (features, empty_row):
    batch = {k: tf.constant(v) for k, v in batch.items()}
    real = batch["input_mask"].numpy().astype(bool)
    results = []
    for model in (padded, unpadded):
      with tf.GradientTape() as tape:
        out = model(batch, training=True)
        loss = pretraining_losses(batch, out)["loss"]
      results.append((out, loss, tape.gradient(loss, model.trainable_variables)))
    (want, want_loss, want_grads), (got, got_loss, got_grads) = results
    pairs = [(want["sequence_output"], got["sequence_output"])]
    pairs += list(zip(want["encoder_outputs"], got["encoder_outputs"]))
    for i, (a, b) in enumerate(pairs):
      np.testing.assert_allclose(np.asarray(b)[real], np.asarray(a)[real], atol=1e-5, err_msg=str(i))
      assert not np.asarray(b)[~real].any(), i
    rows = real.any(axis=1)  # an all-padding row has no meaningful output in either computation
    for name in ("pooled_output", "mlm_logits", "nsp_logits"):
      np.testing.assert_allclose(np.asarray(got[name])[rows], np.asarray(want[name])[rows],
                                 atol=1e-5, err_msg=name)
    if rows.all():
      np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
      for v, g, w in zip(padded.trainable_variables, got_grads, want_grads):
        np.testing.assert_allclose(np.asarray(tf.convert_to_tensor(g)),
                                   np.asarray(tf.convert_to_tensor(w)), atol=1e-5, err_msg=v.path)
    else:
      assert np.isfinite(got_loss) and np.isfinite(np.asarray(got["mlm_logits"])).all()
  clone = BertEncoder.from_config(unpadded.encoder.get_config())
  assert clone.skip_padding


def test_pretraining_step_skips_padding_except_under_xla():
  from bert_tf.pretraining import training
  from bert_tf.pretraining.optimization import create_optimizer
  strategy = training.create_strategy("one_device")
  for jit_compile, expected in ((False, True), (True, False)):
    with strategy.scope():
      model = BertPretrainer(tiny_config())
      optimizer = create_optimizer(1e-3, 10, 1)
    training.PretrainingTask(model, optimizer, strategy, jit_compile=jit_compile)
    assert model.encoder.skip_padding is expected
  with strategy.scope():
    optimizer = create_optimizer(1e-3, 10, 1)
  training.PretrainingTask(model, optimizer, strategy, skip_padding=False)
  assert model.encoder.skip_padding is False


def test_training_reaches_every_weight_learns_and_compiles_with_xla():
  config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  model = BertPretrainer(config)
  features = {k: tf.constant(v) for k, v in make_features(config).items()}

  def loss_and_grads():
    with tf.GradientTape() as tape:
      loss = pretraining_losses(features, model(features, training=True))["loss"]
    return loss, tape.gradient(loss, model.trainable_variables)

  eager_loss, eager_grads = loss_and_grads()
  xla_loss, xla_grads = tf.function(loss_and_grads, jit_compile=True)()
  np.testing.assert_allclose(xla_loss, eager_loss, rtol=1e-5)
  for v, g, x in zip(model.trainable_variables, eager_grads, xla_grads):
    g = np.asarray(tf.convert_to_tensor(g))
    assert np.abs(g).sum() > 0, v.path  # every weight, the tied table and both heads included
    np.testing.assert_allclose(np.asarray(tf.convert_to_tensor(x)), g, atol=1e-5, err_msg=v.path)

  @tf.function
  def sgd_step():
    loss, grads = loss_and_grads()
    for v, g in zip(model.trainable_variables, grads):
      v.assign_sub(0.1 * tf.convert_to_tensor(g))
    return loss

  losses = [float(sgd_step()) for _ in range(12)]
  assert losses[-1] < 0.5 * losses[0]


def test_skip_weight_initialization_is_scoped():
  from bert_tf.modeling.layers import skip_weight_initialization
  config = tiny_config(initializer_range=0.05)
  with skip_weight_initialization():
    blank = BertEncoder(config)
  fresh = BertEncoder(config)
  assert not np.any(np.asarray(blank.embeddings.word_embeddings))
  table = np.asarray(fresh.embeddings.word_embeddings)
  assert 0.03 < table.std() < 0.05 and np.abs(table).max() <= 2 * 0.05 + 1e-6
