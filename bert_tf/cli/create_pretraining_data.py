"""Command line: create masked-LM / next-sentence pretraining TFRecords from text.

Flags, defaults and output are those of google-research/bert's create_pretraining_data.py; a
corpus smaller than --shard_size_mb gives the very same records. New flags: --shard_size_mb,
--num_workers, --gzip, --resume, --runner (local or beam), --beam_pipeline_options.

  python create_pretraining_data.py --input_file=corpus/*.txt --output_file=out.tfrecord \
      --vocab_file=vocab.txt --max_seq_length=128 --dupe_factor=5
"""

from absl import flags
from absl import logging

from bert_tf import errors

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command's flags (idempotent)."""
  if "max_predictions_per_seq" in FLAGS and "shard_size_mb" in FLAGS:
    return
  flags.DEFINE_string("input_file", None,
                      "Input raw text file (or comma-separated list of files; globs and .gz allowed). "
                      "One sentence per line, a blank line between documents.")
  flags.DEFINE_string("output_file", None,
                      "Output TF example file (or comma-separated list of files; records go "
                      "round-robin across them).")
  flags.DEFINE_string("vocab_file", None, "The vocabulary file that the BERT model was trained on.")
  flags.DEFINE_bool("do_lower_case", True,
                    "Whether to lower case the input text. Should be True for uncased models and "
                    "False for cased models.")
  flags.DEFINE_bool("do_whole_word_mask", False,
                    "Whether to use whole word masking rather than per-WordPiece masking.")
  flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.")
  flags.DEFINE_integer("max_predictions_per_seq", 20,
                       "Maximum number of masked LM predictions per sequence.")
  flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")
  flags.DEFINE_integer("dupe_factor", 10,
                       "Number of times to duplicate the input data (with different masks).")
  flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.")
  flags.DEFINE_float("short_seq_prob", 0.1,
                     "Probability of creating sequences which are shorter than the maximum length.")
  flags.DEFINE_float("shard_size_mb", 256.0,
                     "Most MB of text in one shard. Shards are cut at document boundaries and are "
                     "independent pools (own seed; shard 0 uses --random_seed), so an input below "
                     "this size reproduces the original script exactly.")
  flags.DEFINE_integer("num_workers", None,
                       "Worker processes for shards (default: all cores, fewer if the memory cannot "
                       "hold that many; each needs ~1 GB plus ~8x --shard_size_mb). The output "
                       "does not depend on it.")
  flags.DEFINE_bool("gzip", False, "Write GZIP-compressed TFRecords.")
  flags.DEFINE_bool("resume", False,
                    "Skip the run when every output file exists with a manifest matching these "
                    "flags and inputs.")
  flags.DEFINE_enum("runner", "local", ["local", "beam"],
                    "local: worker processes on this machine. beam: an Apache Beam pipeline with the "
                    "same output (pip install bert_tf[beam]); Beam pipeline options go after '--' "
                    "or in --beam_pipeline_options (default: Beam's Python local runner).")
  flags.DEFINE_string("beam_pipeline_options", None,
                      "With --runner=beam: Beam pipeline options as one string, e.g. "
                      "\"--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp\".")


def _job_runner(argv):
  """The Beam runner for --runner=beam (pipeline options from the flag and after '--'), else None."""
  if FLAGS.runner != "beam":
    if len(argv) > 1:
      raise errors.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.beam_pipeline_options:
      raise errors.UsageError("--beam_pipeline_options needs --runner=beam")
    return None
  import shlex
  try:
    from bert_tf.pretraining_data import beam as beam_pipeline
    import apache_beam  # noqa: F401
  except ImportError:
    raise errors.UsageError("--runner=beam needs Apache Beam: pip install 'bert_tf[beam]'") from None
  return beam_pipeline.BeamJobRunner(shlex.split(FLAGS.beam_pipeline_options or "") + list(argv[1:]))


def main(argv):
  job_runner = _job_runner(argv)
  logging.set_verbosity(logging.INFO)
  from bert_tf.pretraining_data import job
  job.create_pretraining_data(
      input_file=FLAGS.input_file, output_file=FLAGS.output_file, vocab_file=FLAGS.vocab_file,
      do_lower_case=FLAGS.do_lower_case, do_whole_word_mask=FLAGS.do_whole_word_mask,
      max_seq_length=FLAGS.max_seq_length, max_predictions_per_seq=FLAGS.max_predictions_per_seq,
      random_seed=FLAGS.random_seed, dupe_factor=FLAGS.dupe_factor,
      masked_lm_prob=FLAGS.masked_lm_prob, short_seq_prob=FLAGS.short_seq_prob,
      shard_size_mb=FLAGS.shard_size_mb, num_workers=FLAGS.num_workers, gzip=FLAGS.gzip,
      resume=FLAGS.resume, job_runner=job_runner)
  if job_runner is None:
    _exit_without_teardown()


def _exit_without_teardown():
  """Ends the process once its outputs are renamed into place and its workers have exited.

  Python's own teardown would then free numba's compiled code one object at a time: about 0.2 s
  spent on nothing, after every run. The exit handlers (log flushing among them) still run."""
  import atexit
  import os
  import sys
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  for stream in (sys.stdout, sys.stderr):
    stream.flush()
  os._exit(0)


def run():
  """Console entry point."""
  define_flags()
  errors.run_main(main)


if __name__ == "__main__":
  run()
