"""Helpers that belong to no single stage.

io_utils     local and remote files, atomic outputs (temporary name, then rename), results files
gc_control   pausing and freezing Python's garbage collector around hot loops
run_lock     one run per output directory: the lock file .bert_tf.lock (pid, host, start time)
stop_signals SIGTERM/SIGINT turned into a stop request that the training loops checkpoint on

May import: bert_tf.errors only.
"""
