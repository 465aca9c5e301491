"""Helpers that belong to no single stage.

io_utils     local and remote files, atomic outputs (temporary name, then rename), results files
gc_control   pausing and freezing Python's garbage collector around hot loops

May import: bert_tf.errors only.
"""
