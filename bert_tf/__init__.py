"""bert_tf: BERT pretraining and fine-tuning for TensorFlow 2 and Keras 3.

The package holds all logic; the top-level scripts (`create_pretraining_data.py`,
`run_pretraining.py`, `run_classifier.py`) only parse flags and call into it.
Submodules import TensorFlow lazily where they can, so `import bert_tf` is cheap.
"""

__version__ = "0.1.0"
