"""Stage 2, pretraining (`run_pretraining.py`): tf.data input, optimizers, the training loop.

input_pipeline    pretraining TFRecords -> distributed tf.data batches
optimization      AdamW / LAMB, warmup + polynomial decay, weight-decay exclusions, clipping
training          strategies, precision policies, gradient accumulation, checkpoint keeping,
                  the train / eval loop

May import: bert_tf.modeling, bert_tf.features, bert_tf.configs, bert_tf.utils, bert_tf.errors,
bert_tf.checkpoints.
"""
