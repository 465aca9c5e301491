"""Stage 1, text -> pretraining TFRecords (`create_pretraining_data.py`).

shards            cuts the input text into shards of whole documents
instances         documents -> instances: NSP pairs, truncation, masking (google-research/bert's order
                  of random draws, via pyrandom)
instance_kernels, record_kernels   the compiled loops behind instances and records
pyrandom          Python's random.Random, reproduced for the compiled loops
records           instances -> serialized tf.train.Example records, shard writers
job               the parallel, bounded-memory job that runs the above over many processes
beam              the same job as an Apache Beam pipeline

May import: bert_tf.text, bert_tf.features, bert_tf.utils, bert_tf.errors. Never TensorFlow at import
time: the job's worker processes stay free of it.
"""
