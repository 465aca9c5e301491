"""Text to token ids: the WordPiece tokenizer (Python and in-graph), vocab files and vocab building.

tokenization     google-research/bert's FullTokenizer, and the tensorflow-text tokenizer layer
word_cache_tokenizer  the same algorithm in plain Python with a per-word cache (preprocessing job)
unicode_tables   the character classes both tokenizers use
vocab_file       reading and checking vocab.txt
vocab            learning a WordPiece vocab from text (`bert-build-vocab`)

May import: bert_tf.errors, bert_tf.utils. Nothing here imports the model or the training code.
"""
