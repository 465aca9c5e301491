"""`python -m bert_tf.checkpoints`: the `bert-checkpoints` command."""
from bert_tf.checkpoints.convert import run

run()
