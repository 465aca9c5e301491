"""Stage 3, fine-tuning (`run_classifier.py`): downstream tasks, training, evaluation, export.

classifier_data   task processors (GLUE and generic TSV/CSV/JSONL) and metrics
classification    the fine-tuning run: input, model, train / eval / predict, results files
export            a servable SavedModel that takes raw text

May import: bert_tf.pretraining (optimizers, strategies), bert_tf.modeling, bert_tf.checkpoints,
bert_tf.text, bert_tf.features, bert_tf.configs, bert_tf.utils, bert_tf.errors.
"""
