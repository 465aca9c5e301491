"""The create_pretraining_data job: shards -> parallel workers -> round-robin TFRecord outputs.

Flow:
  main process: read the input stream, cut shards (`corpus_shards`) --> the next shard goes to
  whichever worker is free (one queue for all) --> each worker tokenizes its shard (unless a
  start-up helper did), builds its instances (`pretraining_data.split_documents` and
  `create_instances`, the two steps of `build_shard_instances`) and serializes their records -->
  shard 0's records are appended to the output files, then shard 1's, ..., record j of a shard
  going to output (o + j) % number of outputs, o being the records before the shard: the
  original's round-robin. The output therefore does not depend on the number of workers.

Who appends: with local outputs, the worker that made the shard, when a counter shared by the
workers (`_ShardOrder`) says every earlier shard is written; until then it keeps the records in
memory (`pretraining_records.ShardBuffer`, up to `JobConfig.worker_buffer_bytes`, beyond which
they spill to piece files). With remote outputs, workers write piece files (record j of the shard
into piece j % number of outputs) and the main process appends them.

Workers take shards as they become free rather than in a fixed rotation, so a worker that is
slowed (by the machine's other load, or by shards that take longer than others) does not leave the
others idle at the end of the run.

Memory: the reader thread is at most one shard ahead of the workers (a queue of size 1) and a worker
holds one shard plus at most `worker_buffer_bytes` of waiting records, so the peak depends on the
shard size and the number of workers, whatever the corpus size; piece files on disk are bounded by
the shards in flight.

Nothing here imports TensorFlow (the tokenizer is `word_cache_tokenizer`, records are serialized
by `pretraining_records`), so a worker starts in well under a second. Workers are forked on Linux
when the calling process has not loaded TensorFlow (they then share its tokenizer and loaded
compiled code), and spawned otherwise (`_start_method`); with one worker everything runs in the
calling process. Forked workers start only once this process has loaded the compiled kernels (the
C extension: a millisecond; with the numba fallback a few tenths of a second warm, a compile on the
first run of an environment); meanwhile helper processes tokenize the first shards on the other
cores (`_StartupTokenizers`). Outputs are written under temporary names and renamed, with their
manifests, only when every shard is done.
"""

import dataclasses
import functools
import os
import pickle
import queue
import threading
import time

from absl import logging

from bert_tf.pretraining_data import shards as corpus_shards
from bert_tf.utils import gc_control
from bert_tf.utils import io_utils
from bert_tf.pretraining_data import instances as pretraining_data
from bert_tf.errors import UsageError

TOOL_NAME = "bert_tf.create_pretraining_data"
_QUEUE_TIMEOUT_S = 1.0
_PROGRESS_EVERY_S = 10.0


@dataclasses.dataclass
class JobConfig:
  """Everything the job needs (already validated by the command line).

  Args:
    input_files: text files, in stream order.
    output_files: TFRecord files; records go round-robin across them.
    vocab_file, do_lower_case: the tokenizer.
    options: `pretraining_data.InstanceOptions`.
    shard_bytes: most bytes of text per shard.
    num_workers: worker processes (1 = in this process).
    compress: gzip the outputs.
    records_per_chunk: records serialized and written at a time.
    worker_buffer_bytes: record bytes a worker may hold in memory while earlier shards are still
      being written; beyond that a shard spills to piece files (same output either way).
  """
  input_files: list
  output_files: list
  vocab_file: str
  do_lower_case: bool
  options: pretraining_data.InstanceOptions
  shard_bytes: int
  num_workers: int = 1
  compress: bool = False
  records_per_chunk: int = 8192
  worker_buffer_bytes: int = 192 << 20


@dataclasses.dataclass
class ShardStats:
  """Counts reported for one shard."""
  documents: int = 0
  sentences: int = 0
  tokens: int = 0
  instances: int = 0
  bad_lines: int = 0
  long_sentences: int = 0
  single_document: bool = False
  # "file:line" of the first line that was not UTF-8, and the index of its shard (-1: none).
  first_bad_line: str = ""
  first_bad_shard: int = -1
  # Time spent on the shard by its worker (tokenizing + building + serializing); a measurement,
  # not part of what the shard produced, so two runs with equal output compare equal.
  seconds: float = dataclasses.field(default=0.0, compare=False)

  def add(self, other):
    for field in ("documents", "sentences", "tokens", "instances", "bad_lines", "long_sentences",
                  "seconds"):
      setattr(self, field, getattr(self, field) + getattr(other, field))
    if other.first_bad_line and (not self.first_bad_line or
                                 other.first_bad_shard < self.first_bad_shard):
      self.first_bad_line, self.first_bad_shard = other.first_bad_line, other.first_bad_shard


@dataclasses.dataclass
class JobSummary:
  """What a finished job produced."""
  totals: ShardStats
  num_shards: int
  single_document_shards: int
  records_per_file: list
  seconds: float
  vocab_size: int


class _ShardBuilder:
  """Per-process state of a worker: the tokenizer and vocab tables, built once."""

  def __init__(self, vocab_file, do_lower_case, options):
    warm_up = threading.Thread(target=pretraining_data.warm_up, name="numba-warm-up", daemon=True)
    warm_up.start()
    try:
      self.tokenizer = _tokenizer(vocab_file, do_lower_case)
    finally:
      warm_up.join()
    self.tables = pretraining_data.VocabTables.from_vocab(self.tokenizer.vocab, vocab_file)
    self.vocab_size = self.tokenizer.vocab_size
    self.options = options

  def process(self, shard, records_per_chunk, tokenized=None):
    """Yields ("chunk", buffer, ends) messages and finally ("done", ShardStats).

    `tokenized`: the shard's (Documents, UndecodableLines, [(word, ids)] newly cached) when a start-up
    helper tokenized it already (`_StartupTokenizers`); the words join this tokenizer's cache.
    """
    start = time.time()
    if tokenized is None:
      documents, bad_lines = _tokenize_shard(shard, self.tokenizer)
    else:
      documents, bad_lines, words = tokenized
      self.tokenizer.remember_words(words)
    instances = pretraining_data.create_instances(documents, shard.index, self.options, self.tables)
    lengths = documents.sentence_starts[1:] - documents.sentence_starts[:-1]
    stats = ShardStats(
        documents=documents.num_documents, sentences=len(lengths), tokens=documents.num_tokens,
        instances=len(instances), bad_lines=bad_lines.count,
        long_sentences=int((lengths > self.options.max_seq_length - 3).sum()),
        single_document=documents.num_documents == 1)
    if bad_lines.count:
      stats.first_bad_line, stats.first_bad_shard = shard.where(bad_lines.first), shard.index
    for buffer, ends in instances.framed_record_chunks(records_per_chunk):
      yield ("chunk", buffer, ends)
    stats.seconds = time.time() - start
    yield ("done", stats)


# The per-shard step under a public name, for other runners of the job (bert_tf.pretraining_data.beam).
ShardProcessor = _ShardBuilder


def _tokenize_shard(shard, tokenizer):
  """A shard's (Documents, `corpus_shards.UndecodableLines`)."""
  lines, bad_lines = corpus_shards.decode_lines(shard.data)
  return pretraining_data.split_documents(lines, tokenizer.tokenize_batch_ids), bad_lines


@functools.lru_cache(maxsize=2)
def _tokenizer(vocab_file, do_lower_case):
  """One tokenizer per vocab and casing in a process; its word cache serves every shard.

  The plain-Python tokenizer gives the same ids as `tokenization.FullTokenizer` without importing
  TensorFlow, which would cost each process seconds of start-up."""
  from bert_tf.text import word_cache_tokenizer
  return word_cache_tokenizer.CachedFullTokenizer(vocab_file, do_lower_case=do_lower_case)


def _worker_main(worker, builder, builder_args, records_per_chunk, num_outputs, compress, work_dir,
                 inbox, outbox, output_paths=None, order=None, buffer_bytes=0):
  """Worker process loop: (shard, tokenized or None) from `inbox` (shared by all workers) until
  None. Messages to `outbox` (shared too) start with the kind and the worker's number `worker`:
  ("ready", w, vocab size), then ("done", w, shard index, records, ShardStats, appended) per shard,
  in the order of its shards, and finally ("end", w) or ("error", w, text, is a usage error).

  With `output_paths` (local outputs), the worker appends each shard's records to the outputs itself
  when `order` says it is that shard's turn (`_OrderedAppender`), so they are written once, from
  memory; otherwise it leaves piece files in `work_dir` for the main process to append.

  `builder` is the parent's `_ShardBuilder` when the worker was forked from it, else None and the
  worker builds its own from `builder_args`.
  """
  from bert_tf.pretraining_data import records as pretraining_records
  global _MAIN_PID
  _MAIN_PID = os.getppid()
  _die_with_main_process()
  try:
    builder = builder or _ShardBuilder(*builder_args)
    outbox.put(("ready", worker, builder.vocab_size))
    appender = (_OrderedAppender(worker, output_paths, order, outbox, buffer_bytes)
                if output_paths else None)
    while True:
      item = _next_shard(inbox, appender)
      if item is None:
        break
      shard, tokenized = item
      if appender is not None:
        records = pretraining_records.ShardBuffer(work_dir, shard.index, num_outputs, compress,
                                                  appender.free_budget())
      else:
        records = pretraining_records.PieceWriter(work_dir, shard.index, num_outputs, compress)
      try:
        for message in builder.process(shard, records_per_chunk, tokenized):
          if message[0] == "chunk":
            records.write_chunk(message[1], message[2])
            if appender is not None:
              appender.append_ready()
          else:
            stats = message[1]
      finally:
        records.close()
      if appender is not None:
        appender.add(shard.index, records, stats)
        appender.append_ready()
      else:
        outbox.put(("done", worker, shard.index, records.num_records, stats, False))
    if appender is not None:
      appender.append_all()
    outbox.put(("end", worker))
  except UsageError as e:
    outbox.put(("error", worker, str(e), True))
  except OSError as e:
    message = io_utils.write_error_message(e, output_paths or [work_dir])
    if message is not None:  # a full disk is the user's to fix: one line
      outbox.put(("error", worker, message, True))
    else:
      import traceback
      outbox.put(("error", worker, f"{type(e).__name__}: {e}\n{traceback.format_exc()}", False))
  except BaseException as e:  # reported to the main process, which stops the job
    import traceback
    outbox.put(("error", worker, f"{type(e).__name__}: {e}\n{traceback.format_exc()}", False))


_TURN_POLL_S = 0.002


class _OrderedAppender:
  """A worker's finished shards, appended to the output files in global shard order.

  `order.head` is the index of the next shard to append and `order.next_record` the global index
  of its first record (shared by all workers). Only the worker holding shard `head` writes, so the
  files grow shard by shard exactly as if one process wrote them.
  """

  def __init__(self, worker, output_paths, order, outbox, buffer_bytes):
    self.worker = worker
    self.files = [open(path, "r+b") for path in output_paths]  # created (empty) by the main process
    self.buffer_bytes = buffer_bytes
    self.order = order
    self.outbox = outbox
    self.pending = []  # (shard index, ShardBuffer, ShardStats), in shard order

  def free_budget(self):
    return max(0, self.buffer_bytes - sum(item[1].nbytes for item in self.pending))

  def add(self, index, records, stats):
    self.pending.append((index, records, stats))

  def append_ready(self):
    """Appends the pending shards whose turn it is; returns whether any is left."""
    while self.pending and self.order.head.value == self.pending[0][0]:
      index, records, stats = self.pending.pop(0)
      records.append_to(self.files, self.order.next_record.value)
      self.order.next_record.value += records.num_records
      self.order.head.value = index + 1  # after the bytes reached the files: the next may go
      self.outbox.put(("done", self.worker, index, records.num_records, stats, True))
    return bool(self.pending)

  def append_all(self):
    while self.append_ready():
      _exit_if_orphaned()
      time.sleep(_TURN_POLL_S)
    for f in self.files:
      f.close()


def _next_shard(inbox, appender):
  """The next shard (or None at the end), appending pending shards while waiting for it."""
  while True:
    waiting = appender is not None and appender.append_ready()
    try:
      return inbox.get(timeout=_TURN_POLL_S if waiting else _QUEUE_TIMEOUT_S)
    except queue.Empty:
      _exit_if_orphaned()


_MAIN_PID = None  # set in each worker: the main process's pid


def _exit_if_orphaned():
  """Ends a worker whose main process is gone (killed), instead of waiting forever.

  (A worker is re-parented when its parent dies. `multiprocessing.parent_process().is_alive()`
  cannot tell: forked siblings keep each other's copy of the parent's pipe open.)"""
  if _MAIN_PID is not None and os.getppid() != _MAIN_PID:
    os._exit(1)


def _die_with_main_process():
  """On Linux, asks the kernel to kill this worker when the main process dies, even while the
  worker is blocked reading a queue that the dead process was half-way through writing."""
  import sys
  if not sys.platform.startswith("linux"):
    return
  try:
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    return
  _exit_if_orphaned()  # the main process may have died before the request


class _Progress:
  """Logs documents/s, instances/s and an ETA from the fraction of input bytes read."""

  def __init__(self, total_input_bytes):
    self.start = time.time()
    self.total_input_bytes = total_input_bytes
    self.last_log = self.start

  def shard_done(self, shard_index, input_bytes_done, totals, shard_seconds=0.0, force=False):
    now = time.time()
    if not force and now - self.last_log < _PROGRESS_EVERY_S:
      return
    self.last_log = now
    elapsed = max(now - self.start, 1e-9)
    eta = ""
    if self.total_input_bytes > 0 and input_bytes_done > 0:
      fraction = min(1.0, input_bytes_done / self.total_input_bytes)
      eta = f", {100 * fraction:.0f}% of the input, ETA {elapsed * (1 - fraction) / fraction:.0f}s"
    logging.info("shard %d done (%.1fs in its worker): %d documents (%.0f/s), %d instances (%.0f/s)%s",
                 shard_index, shard_seconds, totals.documents, totals.documents / elapsed,
                 totals.instances, totals.instances / elapsed, eta)


def run_job(config, writer):
  """Runs the job, writing framed records through `writer` (a `pretraining_records.RecordWriter`).

  Returns:
    `JobSummary`.
  Raises:
    UsageError: bad input found by the reader or a worker (nothing is renamed into place).
  """
  progress = _Progress(corpus_shards.total_input_bytes(config.input_files))
  totals = ShardStats()
  counters = {"shards": 0, "single": 0}

  def on_shard_done(shard_index, input_bytes_done, stats):
    totals.add(stats)
    counters["shards"] += 1
    counters["single"] += int(stats.single_document)
    progress.shard_done(shard_index, input_bytes_done, totals, stats.seconds)

  if config.num_workers <= 1:
    vocab_size = _run_in_process(config, writer, on_shard_done)
  else:
    vocab_size = _run_with_workers(config, writer, on_shard_done)
  seconds = time.time() - progress.start
  return JobSummary(totals=totals, num_shards=counters["shards"], single_document_shards=counters["single"],
                    records_per_file=list(writer.counts), seconds=seconds, vocab_size=vocab_size)


def _run_in_process(config, writer, on_shard_done):
  builder = _ShardBuilder(config.vocab_file, config.do_lower_case, config.options)
  with gc_control.frozen():  # (numba's objects and the vocab: nothing to collect there)
    for shard in corpus_shards.iter_text_shards(config.input_files, config.shard_bytes):
      for message in builder.process(shard, config.records_per_chunk):
        if message[0] == "chunk":
          writer.write_chunk(message[1], message[2])
        else:
          writer.end_shard()
          on_shard_done(shard.index, shard.input_bytes_done, message[1])
  return builder.vocab_size


def _start_method():
  """"fork" where it is safe and cheap (Linux, TensorFlow not loaded in this process): workers then
  share the parent's tokenizer and loaded compiled code and start at once; else "spawn"."""
  import multiprocessing
  import sys
  if (sys.platform.startswith("linux") and "tensorflow" not in sys.modules
      and "fork" in multiprocessing.get_all_start_methods()):
    return "fork"
  return "spawn"


def _scratch_dir(output_path):
  """A hidden scratch folder beside the (local) output (`.name.pieces-<random>-<pid>-<host>`, so
  that a later run can remove it if this one is killed), else in the temporary folder."""
  import tempfile
  if io_utils.is_remote(output_path):
    return tempfile.mkdtemp(prefix=f".{os.path.basename(output_path)}.pieces-")
  path = io_utils.temp_path_for(os.path.abspath(output_path), kind="pieces")
  os.mkdir(path)
  return path


def _run_with_workers(config, writer, on_shard_done):
  """Workers process shards in parallel; their records reach the outputs in shard order, appended
  by the workers themselves (local outputs) or by this process from their piece files (remote
  outputs). Records never travel through pipes."""
  import multiprocessing
  import shutil

  method = _start_method()
  context = multiprocessing.get_context(method)
  num_workers = config.num_workers
  builder_args = (config.vocab_file, config.do_lower_case, config.options)
  builder = startup = None
  if method == "fork":
    startup = _StartupTokenizers.start(config)
    try:
      builder = _ShardBuilder(*builder_args)
    except BaseException:
      if startup is not None:
        startup.close()
      raise
    if startup is not None:
      startup.stop_starting(builder.tokenizer)
  work_dir = _scratch_dir(config.output_files[0])
  inbox = context.Queue(maxsize=1)  # shared: a free worker takes the next shard
  outbox = context.Queue()
  # Local outputs: workers append their shards themselves, in turn. Remote ones (gs://...) are
  # written by this process alone, from the workers' piece files.
  direct = not any(io_utils.is_remote(path) for path in writer.paths)
  order = _ShardOrder(context.Value("q", 0), context.Value("q", 0)) if direct else None
  workers = [
      context.Process(target=_worker_main, name=f"pretraining-data-worker-{w}", daemon=True,
                      args=(w, builder, builder_args, config.records_per_chunk,
                            len(config.output_files), config.compress, work_dir, inbox, outbox,
                            writer.paths if direct else None, order, config.worker_buffer_bytes))
      for w in range(num_workers)]
  reader = _ShardReader(config, inbox, num_workers, startup)
  try:
    with gc_control.frozen():  # the workers keep what they inherit frozen (see gc_control)
      for process in workers:
        process.start()
    reader.start()
    vocab_size = None
    finished = {}  # shard index -> its "done" message, until the shards before it are accounted
    shard_index = 0
    ended = set()
    while len(ended) < num_workers:
      message = _receive(outbox, workers, ended, reader)
      if message[0] == "ready":
        vocab_size = message[2]
      elif message[0] == "end":
        ended.add(message[1])
      else:
        finished[message[2]] = message
        while shard_index in finished:  # in shard order: the outputs' round-robin depends on it
          _, _, index, num_records, stats, appended = finished.pop(shard_index)
          if appended:
            writer.account_shard(num_records)
          else:
            writer.append_pieces(work_dir, index, num_records)
          on_shard_done(shard_index, reader.input_bytes_done.get(shard_index, 0), stats)
          shard_index += 1
    if finished:
      raise RuntimeError(f"shards {sorted(finished)} finished but shard {shard_index} never did")
    reader.join()
    if reader.error is not None:
      raise reader.error
    for process in workers:
      process.join(timeout=30)
    return vocab_size
  finally:
    reader.stop()
    if startup is not None:
      startup.close()
    for process in workers:
      if process.is_alive():
        process.terminate()
        process.join(timeout=5)
    for q in (inbox, outbox):  # after a failure, data left in a queue must not block the exit
      q.cancel_join_thread()
      q.close()
    shutil.rmtree(work_dir, ignore_errors=True)


_STARTUP_MAX_SHARD_BYTES = 16 << 20
_STARTUP_POLL_S = 0.05


class _StartupTokenizers:
  """Helper processes that tokenize the first shards while this process loads its kernels.

  Loading the vocab, the tokenizer and the kernels (with the numba fallback: numba and its compiled
  code) takes this process a few tenths of a second, and the workers
  are forked only afterwards, so that they share the loaded code; meanwhile the other cores would
  idle. Helpers, forked before numba is imported (one per further worker, at most one per further
  core), tokenize the first round of shards (one per worker) in turns. When this process is ready,
  `stop_starting` tells them to start no further shard and adds the words of the shards they
  finished to this process's tokenizer cache, which the workers then inherit. The reader hands each
  helper-tokenized shard to its worker with its documents (`take`), waiting for a shard that a
  helper is still tokenizing rather than tokenizing it again; the words of those shards go with them.
  A shard tokenized by a helper is tokenized exactly as a worker would do it: the records do not
  change.

  Shards over `_STARTUP_MAX_SHARD_BYTES` take much longer to tokenize than the start-up lasts (and
  the start-up is then a negligible part of the run), so no helper is started for them.
  """

  def __init__(self, processes, results, stop):
    self._processes = processes
    self._results = results  # ("started", index), ("done", index, pickled (documents, bad lines, words))
    self._stop = stop
    self._started = set()
    self._done = {}

  @classmethod
  def start(cls, config):
    """Starts the helpers (None when there is nothing for them to do)."""
    import multiprocessing
    num_helpers = min(config.num_workers, os.cpu_count() or 1) - 1
    if num_helpers < 1 or config.shard_bytes > _STARTUP_MAX_SHARD_BYTES:
      return None
    context = multiprocessing.get_context("fork")
    results, stop = context.Queue(), context.Event()
    processes = [
        context.Process(target=_tokenize_first_shards, name=f"pretraining-data-tokenizer-{helper}",
                        daemon=True, args=(config, helper, num_helpers, results, stop))
        for helper in range(num_helpers)]
    for process in processes:
      process.start()
    return cls(processes, results, stop)

  def stop_starting(self, tokenizer):
    """Lets no helper start another shard; the words of the shards done so far join `tokenizer`."""
    self._stop.set()
    self._receive_available()
    for index, (documents, bad_lines, words) in self._done.items():
      tokenizer.remember_words(words)
      self._done[index] = (documents, bad_lines, [])

  def take(self, index):
    """The (Documents, bad lines, words) of shard `index` if a helper tokenized it, else None.
    Waits while a helper is tokenizing it."""
    self._receive_available()
    while index in self._started and index not in self._done:
      try:
        self._receive(self._results.get(timeout=_STARTUP_POLL_S))
      except queue.Empty:
        if not self._processes[index % len(self._processes)].is_alive():
          self._receive_available()  # its last messages may still be in the queue
          break
    self._started.discard(index)
    return self._done.pop(index, None)

  def close(self):
    for process in self._processes:
      process.terminate()
      process.join()
    self._results.cancel_join_thread()
    self._results.close()

  def _receive_available(self):
    while True:
      try:
        self._receive(self._results.get_nowait())
      except queue.Empty:
        return

  def _receive(self, message):
    if message[0] == "started":
      self._started.add(message[1])
    elif message[0] == "done":
      with gc_control.paused():  # tens of thousands of (word, ids) pairs
        self._done[message[1]] = pickle.loads(message[2])
    else:  # "failed": the worker tokenizes the shard itself
      self._started.discard(message[1])


def _tokenize_first_shards(config, helper, num_helpers, results, stop):
  """Helper process: tokenizes shards `helper`, `helper + num_helpers`, ... of the first round (one
  shard per worker) until `stop` is set; reports each shard as it starts and when it is done, with
  the words it added to the cache. A failure ends the helper: the shard's worker then tokenizes the
  shard itself and reports the problem."""
  global _MAIN_PID
  _MAIN_PID = os.getppid()
  _die_with_main_process()
  index = None
  try:
    tokenizer = _tokenizer(config.vocab_file, config.do_lower_case)  # (as this process builds its own)
    sent = tokenizer.num_cached_words()
    for shard in corpus_shards.iter_text_shards(config.input_files, config.shard_bytes):
      if shard.index >= config.num_workers or stop.is_set():
        break
      if shard.index % num_helpers != helper:
        continue
      index = shard.index
      results.put(("started", index))
      documents, bad_lines = _tokenize_shard(shard, tokenizer)
      cached = tokenizer.num_cached_words()
      words = tokenizer.cached_words(sent if cached >= sent else 0)  # (the cache may have restarted)
      sent = cached
      # Pickled here rather than by the queue's feeder thread, which would contend for the GIL with
      # the tokenizing of the next shard (that made the message arrive tens of ms later).
      results.put(("done", index, pickle.dumps((documents, bad_lines, words), protocol=-1)))
      index = None
  except BaseException:  # pylint: disable=broad-except
    if index is not None:
      results.put(("failed", index))
  finally:
    results.close()
    results.join_thread()


@dataclasses.dataclass
class _ShardOrder:
  """Shared by the workers: the next shard to append and the global index of its first record."""
  head: object
  next_record: object


def _receive(outbox, workers, ended, reader):
  """Next message of the workers; raises a worker's error, or RuntimeError if one died without
  ending (seen twice in a row, so that a last message still in the pipe is read first)."""
  suspects = set()
  while True:
    try:
      message = outbox.get(timeout=_QUEUE_TIMEOUT_S)
    except queue.Empty:
      if reader.error is not None and not reader.is_alive():
        raise reader.error
      dead = {w for w, process in enumerate(workers) if w not in ended and not process.is_alive()}
      for w in dead & suspects:
        raise RuntimeError(
            f"{workers[w].name} exited with code {workers[w].exitcode} (out of memory?)")
      suspects = dead
      continue
    if message[0] == "error":
      if message[3]:
        raise UsageError(message[2])
      raise RuntimeError(f"{workers[message[1]].name} failed: {message[2]}")
    return message


class _ShardReader(threading.Thread):
  """Reads shards in a thread into the workers' shared queue, as (shard, tokenized or None) with the
  documents of the shards that start-up helpers tokenized; finally one None for each worker."""

  def __init__(self, config, inbox, num_workers, startup=None):
    super().__init__(name="shard-reader", daemon=True)
    self.config = config
    self.inbox = inbox
    self.num_workers = num_workers
    self.startup = startup
    self.error = None
    self.input_bytes_done = {}
    self._stopped = threading.Event()

  def run(self):
    try:
      for shard in corpus_shards.iter_text_shards(self.config.input_files, self.config.shard_bytes):
        self.input_bytes_done[shard.index] = shard.input_bytes_done
        tokenized = None
        if self.startup is not None and shard.index < self.num_workers:
          tokenized = self.startup.take(shard.index)
          if tokenized is not None:
            shard = dataclasses.replace(shard, data=b"")  # its worker needs the documents only
        if not self._put((shard, tokenized)):
          return
    except BaseException as e:  # raised in the main thread, which then stops the workers
      self.error = e
      return
    for _ in range(self.num_workers):
      self._put(None)

  def _put(self, item):
    while not self._stopped.is_set():
      try:
        self.inbox.put(item, timeout=_QUEUE_TIMEOUT_S)
        return True
      except queue.Full:
        continue
    return False

  def stop(self):
    self._stopped.set()


# ----------------------------------------------------------------------------------------------
# The whole command: validation, atomic outputs, manifests, --resume.

# Settings that decide the records' content (a manifest with the same values means same records).
_OUTPUT_SETTINGS = ("input_file", "output_file", "vocab_file", "do_lower_case", "do_whole_word_mask",
                    "max_seq_length", "max_predictions_per_seq", "random_seed", "dupe_factor",
                    "masked_lm_prob", "short_seq_prob", "shard_size_mb", "gzip")


def validate_settings(settings):
  """Raises `UsageError` naming the flag for values that cannot work; returns warnings (str list)."""
  s = settings
  for name in ("input_file", "output_file", "vocab_file"):
    if not s.get(name):
      raise UsageError(f"--{name} is required")
  if s["max_seq_length"] < 5:
    raise UsageError(f"--max_seq_length={s['max_seq_length']}: must be at least 5 "
                     "([CLS] A [SEP] B [SEP] with one token on each side)")
  if s["max_predictions_per_seq"] < 1:
    raise UsageError(f"--max_predictions_per_seq={s['max_predictions_per_seq']}: must be at least 1")
  if s["dupe_factor"] < 1:
    raise UsageError(f"--dupe_factor={s['dupe_factor']}: must be at least 1")
  for name in ("masked_lm_prob", "short_seq_prob"):
    if not 0.0 <= s[name] <= 1.0:
      raise UsageError(f"--{name}={s[name]}: must be a probability in [0, 1]")
  if not s["shard_size_mb"] > 0:
    raise UsageError(f"--shard_size_mb={s['shard_size_mb']}: must be positive")
  if s["num_workers"] is not None and s["num_workers"] < 1:
    raise UsageError(f"--num_workers={s['num_workers']}: must be at least 1 (or unset for all cores)")
  if not os.path.isfile(s["vocab_file"]) and "://" not in s["vocab_file"]:
    raise UsageError(f"--vocab_file: {s['vocab_file']} does not exist")
  warnings = []
  expected = s["max_seq_length"] * s["masked_lm_prob"]
  if s["max_predictions_per_seq"] < round(expected):
    warnings.append(
        f"--max_predictions_per_seq={s['max_predictions_per_seq']} is below --max_seq_length x "
        f"--masked_lm_prob = {expected:g}: full-length instances get fewer masks than "
        "--masked_lm_prob asks for")
  return warnings


def _output_paths(spec, input_files):
  outputs = [p.strip() for p in spec.split(",") if p.strip()]
  if not outputs:
    raise UsageError("--output_file names no file")
  if len(set(outputs)) != len(outputs):
    raise UsageError("--output_file names the same file twice")
  inputs = {os.path.abspath(p) for p in input_files}
  for path in outputs:
    if os.path.abspath(path) in inputs:
      raise UsageError(f"--output_file {path} is also an --input_file")
    if os.path.isdir(path):
      raise UsageError(f"--output_file {path} is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if "://" not in path and os.path.exists(parent) and not os.access(parent, os.W_OK):
      raise UsageError(f"--output_file {path}: folder {parent} is not writable")
  return outputs


def _fingerprint(settings, input_files, vocab_sha256):
  """What must match for an existing output to be reused by --resume."""
  inputs = []
  for path in input_files:
    try:
      st = os.stat(path)
      inputs.append([path, st.st_size, st.st_mtime_ns])
    except OSError:
      inputs.append([path, None, None])
  return {"settings": {k: settings[k] for k in _OUTPUT_SETTINGS}, "inputs": inputs,
          "vocab_sha256": vocab_sha256}


def _can_resume(outputs, fingerprint):
  from bert_tf import features
  for path in outputs:
    manifest = features.read_manifest(path) if os.path.exists(path) else None
    if not manifest or manifest.get("fingerprint") != fingerprint:
      return False
  return True


def create_pretraining_data(input_file, output_file, vocab_file, do_lower_case=True,
                            do_whole_word_mask=False, max_seq_length=128, max_predictions_per_seq=20,
                            random_seed=12345, dupe_factor=10, masked_lm_prob=0.15, short_seq_prob=0.1,
                            shard_size_mb=256.0, num_workers=None, gzip=False, resume=False,
                            job_runner=None, worker_buffer_mb=None):
  """Creates pretraining TFRecords (+ manifests) from text; the command line's flags as arguments.

  Args: see the flags of `create_pretraining_data.py` (same names and meaning), and
    job_runner: optional `callable(JobConfig, temp_paths) -> JobSummary` that writes the complete
      output files at `temp_paths` instead of the local workers (`beam_pipeline.BeamJobRunner`).
    worker_buffer_mb: memory per worker for finished records waiting for their turn to be
      written (default 192 MB); more spills to scratch files. Does not change the output.
  Returns:
    `JobSummary`, or None when --resume found every output already complete.
  Raises:
    UsageError: bad flags or input, or a full disk; no output is left behind under its final name.
  """
  settings = dict(input_file=input_file, output_file=output_file, vocab_file=vocab_file,
                  do_lower_case=bool(do_lower_case), do_whole_word_mask=bool(do_whole_word_mask),
                  max_seq_length=int(max_seq_length), max_predictions_per_seq=int(max_predictions_per_seq),
                  random_seed=int(random_seed), dupe_factor=int(dupe_factor),
                  masked_lm_prob=float(masked_lm_prob), short_seq_prob=float(short_seq_prob),
                  shard_size_mb=float(shard_size_mb), num_workers=num_workers, gzip=bool(gzip),
                  resume=bool(resume))
  for warning in validate_settings(settings):
    logging.warning("%s", warning)
  input_files = io_utils.expand_input_patterns(input_file, "--input_file")
  for path in input_files:  # a binary file would give records of [UNK]s with only a warning
    reason = io_utils.not_text_reason(path)
    if reason:
      raise UsageError(f"--input_file: {path}: {reason}")
  outputs = _output_paths(output_file, input_files)
  _remove_leftovers_of_killed_runs(outputs)
  vocab_sha256 = io_utils.file_sha256(vocab_file)
  fingerprint = _fingerprint(settings, input_files, vocab_sha256)
  if resume and _can_resume(outputs, fingerprint):
    logging.info("--resume: every output file exists with a manifest matching these flags; nothing to do")
    return None

  options = pretraining_data.InstanceOptions(
      max_seq_length=settings["max_seq_length"], max_predictions_per_seq=settings["max_predictions_per_seq"],
      masked_lm_prob=settings["masked_lm_prob"], short_seq_prob=settings["short_seq_prob"],
      dupe_factor=settings["dupe_factor"], do_whole_word_mask=settings["do_whole_word_mask"],
      random_seed=settings["random_seed"])
  shard_bytes = max(1, int(settings["shard_size_mb"] * (1 << 20)))
  config = JobConfig(input_files=input_files, output_files=outputs, vocab_file=vocab_file,
                     do_lower_case=settings["do_lower_case"], options=options, shard_bytes=shard_bytes,
                     num_workers=min(num_workers or _default_workers(shard_bytes),
                                     _estimated_shards(input_files, shard_bytes)),
                     compress=settings["gzip"])
  if worker_buffer_mb is not None:
    config.worker_buffer_bytes = int(float(worker_buffer_mb) * (1 << 20))
  logging.info("reading %d input file(s); %d output file(s); %d worker(s); shards of %.4g MB",
               len(input_files), len(outputs), config.num_workers, settings["shard_size_mb"])

  try:
    summary = _write_outputs(config, outputs, job_runner, input_file)
    _write_manifests(outputs, summary, config, settings, input_files, fingerprint, vocab_sha256)
  except OSError as e:
    message = io_utils.write_error_message(e, outputs)
    if message is None:
      raise
    raise UsageError(message) from None
  _log_summary(summary, outputs)
  return summary


def _write_outputs(config, outputs, job_runner, input_file):
  """Runs the job into temporary files renamed to `outputs` when complete; returns its summary."""
  import contextlib

  from bert_tf import features
  from bert_tf.pretraining_data import records as pretraining_records
  with contextlib.ExitStack() as stack:
    temps = [stack.enter_context(io_utils.atomic_output(path)) for path in outputs]
    if job_runner is not None:  # e.g. bert_tf.pretraining_data.beam.BeamJobRunner: writes the temps itself
      summary = job_runner(config, temps)
    else:
      writer = pretraining_records.RecordWriter(temps, compress=config.compress)
      try:
        summary = run_job(config, writer)
      finally:
        writer.close()
    _check_corpus(summary, input_file)
    for path in outputs:  # a stale manifest must never describe the new file
      if os.path.exists(features.manifest_path(path)):
        os.remove(features.manifest_path(path))
  return summary


def _write_manifests(outputs, summary, config, settings, input_files, fingerprint, vocab_sha256):
  """The files are in place; their manifests complete them. When one cannot be written (a full
  disk), the outputs and the manifests already written are removed: a record file without its
  manifest must not pass for a finished one."""
  from bert_tf import __version__, features
  options = config.options
  vocab_file = config.vocab_file
  try:
    for index, path in enumerate(outputs):
      features.write_manifest(path, {
          "tool": TOOL_NAME, "version": __version__,
          "max_seq_length": options.max_seq_length,
          "max_predictions_per_seq": options.max_predictions_per_seq,
          "num_instances": summary.records_per_file[index],
          "total_instances": summary.totals.instances,
          "output_index": index, "num_output_files": len(outputs),
          "compression": "GZIP" if config.compress else "",
          "vocab_file": vocab_file, "vocab_sha256": vocab_sha256, "vocab_size": summary.vocab_size,
          "do_lower_case": settings["do_lower_case"],
          "do_whole_word_mask": options.do_whole_word_mask,
          "num_shards": summary.num_shards, "num_documents": summary.totals.documents,
          "num_sentences": summary.totals.sentences, "num_tokens": summary.totals.tokens,
          "input_files": input_files, "flags": settings, "fingerprint": fingerprint,
      })
  except OSError:
    for path in outputs:
      for name in (path, features.manifest_path(path)):
        if os.path.exists(name):
          os.remove(name)
    raise


def _remove_leftovers_of_killed_runs(outputs):
  """Deletes the hidden temporary outputs, manifests and scratch folders that a killed run on this
  host left beside these outputs (their writer's pid no longer runs)."""
  from bert_tf import features
  removed = io_utils.remove_stale_temporaries(
      outputs + [features.manifest_path(path) for path in outputs], kinds=("tmp", "pieces"))
  if removed:
    logging.warning("removed %d temporary file(s) left by an earlier run that was killed: %s",
                    len(removed), ", ".join(sorted(removed)))


def _default_workers(shard_bytes):
  """All cores, unless the machine's memory cannot hold that many workers (each ~1 GB + ~8x its shard)."""
  cores = os.cpu_count() or 1
  try:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return cores
  per_worker = (1 << 30) + 8 * shard_bytes
  fit = max(1, int(0.8 * memory) // per_worker)
  if fit < cores:
    logging.info("using %d of %d cores: each worker needs about %.1f GB with --shard_size_mb=%.4g",
                 fit, cores, per_worker / 2**30, shard_bytes / 2**20)
  return min(cores, fit)


def _estimated_shards(input_files, shard_bytes):
  """An upper guess of the number of shards (no worker is started for shards that cannot exist)."""
  total = 0
  for path in input_files:
    if io_utils.is_remote(path):
      return 1 << 30  # size unknown: no limit
    size = os.path.getsize(path)
    total += size * 8 if path.endswith(".gz") else size  # text rarely compresses beyond 8x
  # Shards are cut between documents, so they can be under-full: allow twice the minimum count.
  return max(1, -(-2 * total // shard_bytes))


def _check_corpus(summary, input_spec):
  totals = summary.totals
  if totals.documents == 0:
    raise UsageError(f"--input_file={input_spec}: the input has no text (no non-empty line)")
  if totals.bad_lines:
    logging.warning("%s: not valid UTF-8 (%d line(s) in all, this one first); their bad bytes "
                    "became U+FFFD", totals.first_bad_line, totals.bad_lines)
  if summary.single_document_shards:
    logging.warning(
        "%d shard(s) hold a single document: their random next segments come from that same "
        "document (separate documents with blank lines)", summary.single_document_shards)
  if totals.long_sentences:
    logging.warning(
        "%d line(s) have more tokens than --max_seq_length - 3 and will be truncated (is the input "
        "one sentence per line?)", totals.long_sentences)


def _log_summary(summary, outputs):
  t = summary.totals
  logging.info("Wrote %d instances to %d file(s) from %d documents, %d sentences, %d tokens "
               "(%d shard(s)) in %.1fs", t.instances, len(outputs), t.documents, t.sentences, t.tokens,
               summary.num_shards, summary.seconds)
