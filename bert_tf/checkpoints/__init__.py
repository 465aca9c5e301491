"""Checkpoints in and out of the Keras BERT: bert_tf's own (TF2), original TF1 ones, exports.

`core` reads and writes them (`huggingface`: Hugging Face BERT directories; `resume`: a run's
newest checkpoint that can be read, past truncated ones); this package re-exports their public
functions so that the import path users already have keeps working:

    from bert_tf.checkpoints import load_google_checkpoint, init_from_checkpoint

May import: bert_tf.configs, bert_tf.errors, bert_tf.utils, bert_tf.modeling, bert_tf.text.
"""

from bert_tf.checkpoints.core import (  # noqa: F401 (re-exported)
    TF1_CHECKPOINT_NAME, export_tf1, export_tf1_checkpoint, import_tf1,
    init_from_checkpoint, is_tf1_checkpoint, load_google_checkpoint, resolve_checkpoint,
    save_bert_tf_checkpoint)
from bert_tf.checkpoints.huggingface import (  # noqa: F401 (re-exported)
    init_from_hf, is_hf_directory, load_hf_model, read_hf_config,
    save_hf_directory)
from bert_tf.checkpoints.convert import define_flags, export_hf, import_hf, main, run  # noqa: F401
