"""`python -m bert_tf.checkpoints`: the `bert-checkpoints` command."""
from bert_tf.checkpoints.core import run

run()
