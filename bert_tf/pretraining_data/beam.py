"""The create_pretraining_data job as an Apache Beam pipeline (DirectRunner, Dataflow, Flink, Spark).

Same shards, same seeds, same per-shard code as the local multi-process job
(`pretraining_job`), so the output files are byte for byte those of
`create_pretraining_data.py --num_workers=N` with the same flags. The stages:

  1. CutShards     one reader walks the input stream and cuts it into document shards with
                   `corpus_shards.iter_text_shards` (shard boundaries depend on everything before
                   them, so this pass is sequential; it only reads bytes, the cheap part).
  2. BuildShards   in parallel, each shard is tokenized and turned into records by the local job's
                   per-shard step (`pretraining_job.ShardProcessor`), seeded by its shard index.
                   Record j of a shard goes to piece file `j % num_outputs` of that shard, so no
                   worker needs to know how many records came before its shard.
  3. PlanOutputs   once every shard is done, shard k starts at global record offset o_k (the sum
                   of the counts before it). Globally, record g goes to output `g % num_outputs`
                   (the original's round-robin), so output f is the concatenation, in shard order,
                   of piece `(f - o_k) % num_outputs` of each shard k.
  4. WriteOutputs  each output file is written by one worker by concatenating its pieces (with
                   --gzip each piece is already one gzip member), in parallel across output files.

The launching process then renames the finished files into place and writes their manifests
(`pretraining_job.create_pretraining_data` does that part for both runners). Scratch files live in
a hidden folder beside the first output and are removed at the end.

Trade-off at Dataflow scale: stage 4 re-reads every record once more (the pieces), which costs
I/O but keeps the output identical to the local job and the original's round-robin order; with
many output files (e.g. one per 256 MB) this stage is as parallel as the file count.

Example (Python):
  runner = BeamJobRunner(["--runner=DirectRunner"])
  pretraining_job.create_pretraining_data(..., job_runner=runner)
"""

import dataclasses
import json
import time

from absl import logging

from bert_tf.pretraining_data import shards as corpus_shards
from bert_tf.pretraining_data import job as pretraining_job
from bert_tf.pretraining_data import records as pretraining_records

_COPY_BLOCK_BYTES = 16 << 20


@dataclasses.dataclass
class ShardResult:
  """What BuildShards reports for one shard (the records themselves are in its piece files).

  Args:
    index: the shard's position in the stream.
    num_records: records (instances) the shard produced.
    stats: `pretraining_job.ShardStats` of the shard.
    vocab_size: size of the tokenizer's vocabulary.
  """
  index: int
  num_records: int
  stats: pretraining_job.ShardStats
  vocab_size: int


def output_pieces(results, num_outputs, work_dir):
  """The piece files each output file is made of, in order.

  Args:
    results: `ShardResult`s of every shard (any order).
    num_outputs: number of output files.
    work_dir: the scratch folder of the pieces.
  Returns:
    `(pieces, records_per_file)`: `pieces[f]` lists the piece paths of output f in shard order;
    `records_per_file[f]` its record count.
  Raises:
    RuntimeError: a shard is missing (the shard indices are not 0..K-1).
  """
  results = sorted(results, key=lambda r: r.index)
  if [r.index for r in results] != list(range(len(results))):
    raise RuntimeError(f"shard results are incomplete: got indices {[r.index for r in results]}")
  pieces = [[] for _ in range(num_outputs)]
  records_per_file = [0] * num_outputs
  offset = 0  # global index of the shard's first record
  for result in results:
    for f, residue, count in pretraining_records.shard_pieces(result.num_records, offset, num_outputs):
      pieces[f].append(pretraining_records.piece_path(work_dir, result.index, residue))
      records_per_file[f] += count
    offset += result.num_records
  return pieces, records_per_file


def _filesystems():
  from apache_beam.io.filesystems import FileSystems
  return FileSystems


def _create(path):
  """Opens `path` for writing raw bytes through Beam's file systems (local, gs://, s3://, hdfs://)."""
  from apache_beam.io.filesystem import CompressionTypes
  return _filesystems().create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _open(path):
  from apache_beam.io.filesystem import CompressionTypes
  return _filesystems().open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _cut_shards(input_files, shard_bytes):
  """Stage 1: yields the `corpus_shards.TextShard`s of the input stream."""
  for shard in corpus_shards.iter_text_shards(input_files, shard_bytes):
    yield shard


def _make_build_shards_fn(config, work_dir):
  """Stage 2 as a DoFn (built lazily so this module imports without apache_beam)."""
  import apache_beam as beam

  class BuildShards(beam.DoFn):
    """Tokenizes a shard, builds its records and splits them into `num_outputs` piece files."""

    def __init__(self):
      super().__init__()
      self.processor = None

    def setup(self):
      # One tokenizer (and word cache) per worker process.
      self.processor = pretraining_job.ShardProcessor(config.vocab_file, config.do_lower_case,
                                                      config.options)

    def process(self, shard):
      pieces = pretraining_records.PieceWriter(work_dir, shard.index, len(config.output_files),
                                               config.compress, open_file=_create)
      stats = pretraining_job.ShardStats()
      try:
        for message in self.processor.process(shard, config.records_per_chunk):
          if message[0] == "done":
            stats = message[1]
          else:
            pieces.write_chunk(message[1], message[2])
      finally:
        pieces.close()
      logging.info("shard %d: %d documents, %d instances", shard.index, stats.documents,
                   stats.instances)
      yield ShardResult(index=shard.index, num_records=pieces.num_records, stats=stats,
                        vocab_size=self.processor.vocab_size)

  return BuildShards()


def _plan_outputs(results, num_outputs, work_dir):
  """Stage 3: writes the job summary into the scratch folder; yields (output index, piece paths)."""
  pieces, records_per_file = output_pieces(results, num_outputs, work_dir)
  totals = pretraining_job.ShardStats()
  for result in results:
    totals.add(result.stats)
  summary = {
      "totals": dataclasses.asdict(totals), "num_shards": len(results),
      "single_document_shards": sum(int(r.stats.single_document) for r in results),
      "records_per_file": records_per_file,
      "vocab_size": max([r.vocab_size for r in results], default=0),
  }
  with _create(f"{work_dir}/summary.json") as f:
    f.write(json.dumps(summary).encode("utf-8"))
  for index in range(num_outputs):
    yield index, pieces[index]


def _make_write_output_fn(temp_outputs):
  """Stage 4: concatenates the pieces of one output file (already compressed when asked) into its
  (temporary) path."""

  def write_output(element):
    index, paths = element
    with _create(temp_outputs[index]) as out:
      for path in paths:
        with _open(path) as piece:
          while True:
            block = piece.read(_COPY_BLOCK_BYTES)
            if not block:
              break
            out.write(block)
    return index

  return write_output


def build_pipeline(pipeline, config, temp_outputs, work_dir):
  """Adds the four stages to `pipeline`.

  Args:
    pipeline: a `beam.Pipeline`.
    config: `pretraining_job.JobConfig` (input files, options, output count, compression).
    temp_outputs: where to write output i (the caller renames them when the pipeline succeeded).
    work_dir: scratch folder for the pieces and the summary.
  """
  import apache_beam as beam
  num_outputs = len(config.output_files)
  results = (
      pipeline
      | "InputFiles" >> beam.Create([list(config.input_files)])
      | "CutShards" >> beam.FlatMap(_cut_shards, config.shard_bytes)
      | "SpreadShards" >> beam.Reshuffle()
      | "BuildShards" >> beam.ParDo(_make_build_shards_fn(config, work_dir)))
  _ = (
      results
      | "AllShards" >> beam.combiners.ToList()
      | "PlanOutputs" >> beam.FlatMap(_plan_outputs, num_outputs, work_dir)
      | "SpreadOutputs" >> beam.Reshuffle()
      | "WriteOutputs" >> beam.Map(_make_write_output_fn(list(temp_outputs))))


class BeamJobRunner:
  """Runs the job on Beam; pass it as `job_runner` to `pretraining_job.create_pretraining_data`.

  Args:
    pipeline_args: standard Beam pipeline options, e.g. ["--runner=DataflowRunner",
      "--project=p", "--region=r", "--temp_location=gs://b/tmp"]. Without `--runner`, Beam's
      Python local runner (FnApiRunner, what DirectRunner falls back to) runs the pipeline on this
      machine; unlike `--runner=DirectRunner` it never tries to download the Prism runner binary.
  """

  def __init__(self, pipeline_args=()):
    self.pipeline_args = list(pipeline_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in self.pipeline_args):
      self.pipeline_args.insert(0, "--runner=FnApiRunner")

  def __call__(self, config, temp_outputs):
    """Writes the complete output files at `temp_outputs`; returns a `pretraining_job.JobSummary`."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from bert_tf.errors import UsageError

    start = time.time()
    work_dir = f"{temp_outputs[0]}.beam-work"
    options = PipelineOptions(self.pipeline_args)
    logging.info("Beam pipeline options: %s", " ".join(self.pipeline_args))
    try:
      pipeline = beam.Pipeline(options=options)
      build_pipeline(pipeline, config, temp_outputs, work_dir)
      try:
        pipeline.run().wait_until_finish()
      except Exception as e:  # noqa: BLE001 -- re-raised unless it carries a user error
        message = usage_error_message(e)
        if message is None:
          raise
        raise UsageError(message) from None
      with _open(f"{work_dir}/summary.json") as f:
        summary = json.loads(f.read().decode("utf-8"))
    finally:
      _remove_tree(work_dir)
    return pretraining_job.JobSummary(
        totals=pretraining_job.ShardStats(**summary["totals"]), num_shards=summary["num_shards"],
        single_document_shards=summary["single_document_shards"],
        records_per_file=summary["records_per_file"], seconds=time.time() - start,
        vocab_size=summary["vocab_size"])


def usage_error_message(error):
  """The one-line message of a `UsageError` raised in a pipeline stage, or None.

  Local runners re-raise the `UsageError` itself with the failing stage appended; remote runners
  (Dataflow, Flink) raise their own exception whose text holds the worker's traceback.
  """
  from bert_tf.errors import UsageError
  text = str(error).strip()
  if not isinstance(error, UsageError):
    marker = "UsageError: "
    at = text.rfind(marker)
    if at < 0:
      return None
    text = text[at + len(marker):]
  lines = text.splitlines()
  return lines[0].split(" [while running ")[0] if lines else None


def _remove_tree(path):
  """Deletes the scratch folder `path` and its files, quietly (it may not exist)."""
  filesystems = _filesystems()
  try:
    matches = filesystems.match([f"{path}/*"])[0].metadata_list
    if matches:
      filesystems.delete([m.path for m in matches])
    if filesystems.exists(path):
      filesystems.delete([path])
  except Exception as e:  # noqa: BLE001 -- scratch cleanup must not hide the job's own outcome
    logging.warning("could not remove the scratch folder %s: %s", path, e)
