"""Old import path of `bert_tf.text.tokenization` (`from bert_tf.tokenization import FullTokenizer`).

This module is replaced by `bert_tf.text.tokenization` itself on import, so both names are the same
module object (patching one patches the other).
"""
import sys

from bert_tf.text import tokenization as _implementation

sys.modules[__name__] = _implementation
