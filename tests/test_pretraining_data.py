"""create_pretraining_data: exact parity with google-research/bert, sharding, workers, bad input."""

import gzip
import json
import os
import random
import struct
import subprocess
import sys

import numpy as np
import pytest

from bert_tf.pretraining_data import shards as corpus_shards
from bert_tf import features
from bert_tf.pretraining_data import instance_kernels
from bert_tf.pretraining_data import instances as pretraining_data
from bert_tf.pretraining_data import job as pretraining_job
from bert_tf.pretraining_data import records as pretraining_records
from bert_tf.pretraining_data import pyrandom
from bert_tf.pretraining_data import pyrandom_jit
from bert_tf.errors import UsageError

VOCAB = "vocab/bert-base-uncased-vocab.txt"

# data/README.md: the flags of each reference file made by the original script.
REFERENCE_RUNS = {
    "sample_text_s128_p20_d5.tfrecord": dict(
        input_file="corpus/sample_text.txt", max_seq_length=128, max_predictions_per_seq=20,
        masked_lm_prob=0.15, random_seed=12345, dupe_factor=5, short_seq_prob=0.1,
        do_whole_word_mask=False, do_lower_case=True),
    "mobydick12ch_wwm_s128_p20_d2.tfrecord": dict(
        input_file="corpus/mobydick_12ch.txt", max_seq_length=128, max_predictions_per_seq=20,
        masked_lm_prob=0.15, random_seed=7, dupe_factor=2, short_seq_prob=0.1,
        do_whole_word_mask=True, do_lower_case=True),
    "chinese_s64_p10_d1.tfrecord": dict(
        input_file="corpus/chinese_novels.txt", max_seq_length=64, max_predictions_per_seq=10,
        masked_lm_prob=0.15, random_seed=3, dupe_factor=1, short_seq_prob=0.1,
        do_whole_word_mask=False, do_lower_case=True),
}
REFERENCE_COUNTS = {"sample_text_s128_p20_d5.tfrecord": 60, "mobydick12ch_wwm_s128_p20_d2.tfrecord": 549,
                    "chinese_s64_p10_d1.tfrecord": 1788}


def read_records(path, compression=""):
  """Raw serialized records of a TFRecord file (through TensorFlow, which checks the CRCs)."""
  import tensorflow as tf
  return [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=compression)]


def parse(records, max_seq_length, max_predictions_per_seq):
  import tensorflow as tf
  spec = features.pretraining_feature_spec(max_seq_length, max_predictions_per_seq)
  return {k: v.numpy() for k, v in tf.io.parse_example(tf.constant(records), spec).items()}


def assert_same_features(ours, theirs):
  assert sorted(ours) == sorted(theirs)
  for name in theirs:
    np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def run(data_dir, out, **kwargs):
  kwargs = dict(kwargs)
  kwargs["input_file"] = kwargs["input_file"] if os.path.isabs(kwargs["input_file"]) else os.path.join(
      data_dir, kwargs["input_file"])
  kwargs.setdefault("vocab_file", os.path.join(data_dir, VOCAB))
  kwargs.setdefault("num_workers", 1)
  return pretraining_job.create_pretraining_data(output_file=out, **kwargs)


# --- Python's random, reproduced ------------------------------------------------------------------


def test_compiled_draws_equal_python_random_on_many_seeds():
  for seed in list(range(40)) + [12345, -3, 2**63 + 11, "text seed"]:
    state = pyrandom.state_from_seed(seed)
    rng = random.Random(seed)
    for n in (1, 2, 3, 7, 64, 65, 125, 30522, 2**31 - 1, 2**40 + 7):
      assert [pyrandom_jit.randbelow(state, n) for _ in range(25)] == [rng._randbelow(n) for _ in range(25)]
    assert [pyrandom_jit.random_float(state) for _ in range(50)] == [rng.random() for _ in range(50)]
    assert [pyrandom_jit.randint(state, 2, 125) for _ in range(50)] == [rng.randint(2, 125) for _ in range(50)]
    assert [pyrandom_jit.getrandbits(state, k) for k in (1, 5, 32, 33, 63)] == [
        rng.getrandbits(k) for k in (1, 5, 32, 33, 63)]
    values = list(range(300))
    rng.shuffle(values)
    assert pyrandom_jit.permutation(state, 300).tolist() == values
    # The state round-trips: both generators continue identically.
    assert pyrandom.state_to_python(state).random() == rng.random()


def test_python_round_is_bankers_rounding():
  for x in (0.5, 1.5, 2.5, 3.49, 3.5, 18.75, 19.2, 19.5, 20.5, 0.0):
    assert instance_kernels._python_round(x) == round(x)


# --- parity with google-research/bert ---------------------------------------------------------------


@pytest.mark.parametrize("reference", sorted(REFERENCE_RUNS))
def test_records_equal_the_original_scripts(data_dir, tmp_path, monkeypatch, reference):
  monkeypatch.setattr(pretraining_data, "_TOKENIZE_BATCH_LINES", 97)  # many tokenizer batches
  flags = REFERENCE_RUNS[reference]
  out = str(tmp_path / "out.tfrecord")
  summary = run(data_dir, out, **flags)
  theirs = read_records(os.path.join(data_dir, "google_reference", reference))
  ours = read_records(out)
  assert len(ours) == len(theirs) == REFERENCE_COUNTS[reference] == summary.totals.instances
  seq, pred = flags["max_seq_length"], flags["max_predictions_per_seq"]
  assert_same_features(parse(ours, seq, pred), parse(theirs, seq, pred))
  manifest = features.read_manifest(out)
  assert manifest["tool"] == "bert_tf.create_pretraining_data"
  assert manifest["num_instances"] == len(theirs) and manifest["compression"] == ""
  assert manifest["max_seq_length"] == seq and manifest["max_predictions_per_seq"] == pred
  assert manifest["vocab_size"] == 30522 and manifest["num_shards"] == 1
  assert manifest["flags"]["random_seed"] == flags["random_seed"]


def test_documents_continue_across_input_files_as_in_the_original(data_dir, tmp_path):
  """The original pools files as one line stream: a file without a closing blank line continues
  its last document in the next file. Splitting sample_text mid-document must change nothing."""
  with open(os.path.join(data_dir, "corpus/sample_text.txt"), "rb") as f:
    lines = f.read().split(b"\n")
  (tmp_path / "a.txt").write_bytes(b"\n".join(lines[:5]))  # no final newline either
  (tmp_path / "b.txt").write_bytes(b"\n".join(lines[5:]))
  flags = dict(REFERENCE_RUNS["sample_text_s128_p20_d5.tfrecord"])
  flags["input_file"] = f"{tmp_path}/a.txt,{tmp_path}/b.txt"
  out = str(tmp_path / "out.tfrecord")
  run(data_dir, out, **flags)
  theirs = read_records(os.path.join(data_dir, "google_reference/sample_text_s128_p20_d5.tfrecord"))
  assert_same_features(parse(read_records(out), 128, 20), parse(theirs, 128, 20))


# --- record serialization -------------------------------------------------------------------------


def _small_shard(data_dir, **option_overrides):
  tokenizer = pretraining_job._tokenizer(os.path.join(data_dir, VOCAB), True)
  with open(os.path.join(data_dir, "corpus/sample_text.txt"), "rb") as f:
    lines, _ = corpus_shards.decode_lines(f.read())
  tables = pretraining_data.VocabTables.from_vocab(tokenizer.vocab)
  options = pretraining_data.InstanceOptions(dupe_factor=2, **option_overrides)
  return pretraining_data.build_shard_instances(lines, 0, options, tokenizer.tokenize_batch_ids, tables)


def test_hand_written_records_parse_like_tf_train_example(data_dir):
  import tensorflow as tf
  shard = _small_shard(data_dir, max_seq_length=48, max_predictions_per_seq=7)
  ours = list(shard.serialized_examples(chunk_size=5))
  arrays = shard.padded_arrays()
  reference = [
      features.serialize_pretraining_example(
          arrays["input_ids"][i], arrays["input_mask"][i], arrays["segment_ids"][i],
          arrays["masked_lm_positions"][i], arrays["masked_lm_ids"][i], arrays["masked_lm_weights"][i],
          int(arrays["next_sentence_labels"][i, 0]))
      for i in range(len(shard))]
  assert len(ours) == len(reference) > 20
  for mine, theirs in zip(ours, reference):
    assert tf.train.Example.FromString(mine) == tf.train.Example.FromString(theirs)
  assert_same_features(parse(ours, 48, 7), parse(reference, 48, 7))
  parsed = parse(ours, 48, 7)
  # Invariants of the original's instances.
  assert (parsed["input_ids"][:, 0] == 101).all()
  assert ((parsed["input_ids"] == 102).sum(axis=1) >= 2).all()
  assert (parsed["masked_lm_weights"].sum(axis=1) >= 1).all()
  assert set(np.unique(parsed["next_sentence_labels"])) == {0, 1}


def test_tfrecord_framing_crc_matches_tensorflow_files(data_dir):
  with open(os.path.join(data_dir, "google_reference/sample_text_s128_p20_d5.tfrecord"), "rb") as f:
    head = f.read(20000)
  (length,) = struct.unpack("<Q", head[:8])
  (length_crc,) = struct.unpack("<I", head[8:12])
  (data_crc,) = struct.unpack("<I", head[12 + length:16 + length])
  assert pretraining_records.masked_crc32c(head[:8]) == length_crc
  assert pretraining_records.masked_crc32c(head[12:12 + length]) == data_crc


# --- sharding and workers -------------------------------------------------------------------------


def test_shards_are_cut_only_between_documents(tmp_path):
  rng = random.Random(0)
  docs = [[f"doc {d} sentence {s} " + "x" * rng.randint(0, 60) for s in range(rng.randint(1, 9))]
          for d in range(60)]
  text = "\n\n".join("\n".join(doc) for doc in docs)  # no final newline
  path = tmp_path / "c.txt"
  path.write_text(text)
  limit = 900
  shards = list(corpus_shards.iter_text_shards([str(path)], limit))
  assert len(shards) > 5
  assert [s.index for s in shards] == list(range(len(shards)))
  assert b"".join(s.data for s in shards) == text.encode() + b"\n"
  for shard in shards:
    assert len(shard.data) <= limit or shard.data.strip().count(b"\n\n") == 0
    assert shard.data.endswith(b"\n\n") or shard is shards[-1]  # ends at a document boundary
  assert shards[-1].input_bytes_done == len(text)


def test_one_and_two_workers_write_identical_multi_shard_outputs(data_dir, tmp_path):
  flags = dict(input_file="corpus/mobydick_12ch.txt", dupe_factor=2, max_seq_length=64,
               max_predictions_per_seq=10, random_seed=5, shard_size_mb=0.02)
  outs = {}
  # Workers append finished shards from memory; a buffer of 0.05 MB spills some shards to scratch
  # piece files and 0 spills every shard: the bytes must not change.
  for workers, compress, buffer_mb in ((1, False, None), (2, False, None), (2, False, 0.05),
                                       (1, True, None), (2, True, None), (3, True, None),
                                       (2, True, 0), (3, False, 0)):
    names = [str(tmp_path / f"w{workers}_{k}{'.gz' if compress else ''}.tfrecord") for k in range(2)]
    summary = run(data_dir, ",".join(names), num_workers=workers, gzip=compress,
                  worker_buffer_mb=buffer_mb, **flags)
    contents = [open(n, "rb").read() for n in names]
    if buffer_mb is None:
      outs[workers, compress] = contents
    else:
      assert contents == outs[1, compress], (workers, compress, buffer_mb)
    assert summary.num_shards >= 5
    manifests = [features.read_manifest(n) for n in names]
    assert [m["num_instances"] for m in manifests] == summary.records_per_file
    assert sum(summary.records_per_file) == summary.totals.instances
  assert outs[1, False] == outs[2, False]
  assert outs[1, True] == outs[2, True] == outs[3, True]  # gzip members per shard, same bytes
  for k in range(2):
    assert read_records(str(tmp_path / f"w2_{k}.gz.tfrecord"), "GZIP") == read_records(
        str(tmp_path / f"w1_{k}.tfrecord"))
  assert not [n for n in os.listdir(tmp_path) if "pieces" in n or ".tmp" in n]  # scratch removed
  # Round-robin: one output file holds the interleaving of the two.
  single = str(tmp_path / "single.tfrecord")
  run(data_dir, single, **flags)
  both = read_records(str(tmp_path / "w1_0.tfrecord")), read_records(str(tmp_path / "w1_1.tfrecord"))
  merged = [r for pair in zip(*both) for r in pair] + both[0][len(both[1]):]
  assert read_records(single) == merged
  # Shard 0 keeps --random_seed, so its first records equal a run of its text alone... and other
  # shards have their own seeds: the multi-shard output differs from a single-shard run.
  whole = str(tmp_path / "whole.tfrecord")
  run(data_dir, whole, **dict(flags, shard_size_mb=256))
  assert read_records(whole) != read_records(single)


def test_gzip_output_holds_the_same_records(data_dir, tmp_path):
  flags = dict(input_file="corpus/sample_text.txt", dupe_factor=2)
  plain, packed = str(tmp_path / "p.tfrecord"), str(tmp_path / "z.tfrecord")
  run(data_dir, plain, **flags)
  run(data_dir, packed, gzip=True, **flags)
  with open(packed, "rb") as f:
    assert f.read(2) == b"\x1f\x8b"
  assert read_records(packed, "GZIP") == read_records(plain)
  assert features.read_manifest(packed)["compression"] == "GZIP"


def test_resume_skips_complete_outputs_and_redoes_changed_ones(data_dir, tmp_path):
  out = str(tmp_path / "o.tfrecord")
  flags = dict(input_file="corpus/sample_text.txt", dupe_factor=1)
  assert run(data_dir, out, **flags) is not None
  stamp = os.stat(out).st_mtime_ns
  assert run(data_dir, out, resume=True, **flags) is None
  assert os.stat(out).st_mtime_ns == stamp
  assert run(data_dir, out, resume=True, **dict(flags, random_seed=1)) is not None
  assert features.read_manifest(out)["flags"]["random_seed"] == 1


# --- bad input ------------------------------------------------------------------------------------


def test_undecodable_lines_are_replaced_and_counted(data_dir, tmp_path):
  text = open(os.path.join(data_dir, "corpus/sample_text.txt"), "rb").read()
  bad = text.replace(b"Text should be one-sentence-per-line", b"Text \xff\xfe should be", 1)
  bad = bad.replace(b"Something glittered", b"Something \xc3 glittered", 1)
  assert bad.count(b"\xff") == 1 and b"\xc3 " in bad
  lines, count = corpus_shards.decode_lines(bad)
  assert count == (2, 1) and sum("\ufffd" in line for line in lines) == 2  # (count, first)
  path = tmp_path / "bad.txt"
  path.write_bytes(bad)
  summary = run(data_dir, str(tmp_path / "o.tfrecord"), input_file=str(path), dupe_factor=1)
  assert summary.totals.bad_lines == 2 and summary.totals.instances > 0
  assert summary.totals.first_bad_line == f"{path}:2"  # the warning names it


def test_single_document_corpus_is_counted_for_its_warning(data_dir, tmp_path):
  path = tmp_path / "one.txt"
  path.write_text("The first sentence is here.\nA second one follows it.\nAnd a third.\n" * 20)
  summary = run(data_dir, str(tmp_path / "o.tfrecord"), input_file=str(path), dupe_factor=1)
  assert summary.single_document_shards == 1 and summary.totals.instances > 0


def test_too_few_predictions_for_the_mask_rate_warns():
  settings = dict(input_file="x", output_file="y", vocab_file=__file__, max_seq_length=512,
                  max_predictions_per_seq=20, masked_lm_prob=0.15, short_seq_prob=0.1, dupe_factor=1,
                  shard_size_mb=1, num_workers=None)
  assert any("--max_predictions_per_seq" in w for w in pretraining_job.validate_settings(settings))
  assert not pretraining_job.validate_settings(dict(settings, max_predictions_per_seq=77))


@pytest.mark.parametrize("overrides, flag", [
    (dict(max_seq_length=3), "--max_seq_length"), (dict(masked_lm_prob=1.5), "--masked_lm_prob"),
    (dict(short_seq_prob=-0.1), "--short_seq_prob"), (dict(dupe_factor=0), "--dupe_factor"),
    (dict(shard_size_mb=0), "--shard_size_mb"), (dict(num_workers=-2), "--num_workers"),
    (dict(max_predictions_per_seq=0), "--max_predictions_per_seq"),
    (dict(input_file="corpus/no_such_file.txt"), "--input_file"),
    (dict(vocab_file="/nonexistent/vocab.txt"), "--vocab_file"),
])
def test_nonsensical_flags_are_rejected_naming_the_flag(data_dir, tmp_path, overrides, flag):
  out = tmp_path / "o.tfrecord"
  flags = dict(dict(input_file="corpus/sample_text.txt"), **overrides)
  with pytest.raises(UsageError, match=flag):
    run(data_dir, str(out), **flags)
  assert os.listdir(tmp_path) == []


def test_vocab_without_mask_and_empty_corpus_leave_no_output(data_dir, tmp_path):
  vocab = tmp_path / "vocab.txt"
  with open(os.path.join(data_dir, VOCAB), encoding="utf-8") as f:
    vocab.write_text("".join(line for line in f if line.strip() != "[MASK]"), encoding="utf-8")
  out = tmp_path / "out" / "o.tfrecord"
  with pytest.raises(UsageError, match=r"vocab.*\[MASK\]"):
    run(data_dir, str(out), input_file="corpus/sample_text.txt", vocab_file=str(vocab))
  empty = tmp_path / "empty.txt"
  empty.write_text("\n  \n\t\n\n")
  with pytest.raises(UsageError, match="no text"):
    run(data_dir, str(out), input_file=str(empty))
  assert not out.parent.exists() or os.listdir(out.parent) == []


def _script(repo_root, tmp_path, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, os.path.join(repo_root, "create_pretraining_data.py"), *args],
                        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)


def test_script_reports_bad_input_on_one_line_and_writes_nothing(repo_root, data_dir, tmp_path):
  vocab = os.path.join(data_dir, VOCAB)
  too_long = tmp_path / "long.txt"  # two documents (shards queued for workers), then a 300 KB line
  too_long.write_text(("A short sentence here.\n" * 3000 + "\n") * 2 + "word " * 60000 + "\n")
  cases = [
      ([f"--input_file={tmp_path}/missing*.txt", f"--vocab_file={vocab}"], "--input_file"),
      ([f"--input_file={data_dir}/corpus/sample_text.txt", f"--vocab_file={vocab}", "--dupe_factor=-1"],
       "--dupe_factor"),
      ([f"--input_file={too_long}", f"--vocab_file={vocab}", "--shard_size_mb=0.1", "--num_workers=2"],
       "long.txt:6003"),
  ]
  for args, needle in cases:
    result = _script(repo_root, tmp_path, *args, "--output_file=out/o.tfrecord")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_script_runs_with_the_original_command_line(repo_root, data_dir, tmp_path):
  """The original's flags on gzip'ed input: same records as the reference."""
  src = os.path.join(data_dir, "corpus/sample_text.txt")
  with open(src, "rb") as f, gzip.open(tmp_path / "sample.txt.gz", "wb") as g:
    g.write(f.read())
  result = _script(repo_root, tmp_path, f"--input_file={tmp_path}/*.gz", "--output_file=o.tfrecord",
                   f"--vocab_file={os.path.join(data_dir, VOCAB)}", "--do_lower_case=True",
                   "--max_seq_length=128", "--max_predictions_per_seq=20", "--masked_lm_prob=0.15",
                   "--random_seed=12345", "--dupe_factor=5", "--num_workers=1")
  assert result.returncode == 0, result.stderr
  assert "Wrote 60 instances" in result.stderr
  theirs = read_records(os.path.join(data_dir, "google_reference/sample_text_s128_p20_d5.tfrecord"))
  assert_same_features(parse(read_records(str(tmp_path / "o.tfrecord")), 128, 20), parse(theirs, 128, 20))
  manifest = json.loads((tmp_path / "o.tfrecord.manifest.json").read_text())
  assert manifest["num_instances"] == 60 and manifest["flags"]["num_workers"] == 1



def test_main_process_appends_pieces_for_remote_outputs(data_dir, tmp_path):
  # Outputs on a remote file system cannot be appended to by the workers: they leave piece files
  # and the main process appends them. Same bytes as one process writing everything.
  options = pretraining_data.InstanceOptions(max_seq_length=64, max_predictions_per_seq=10,
                                             dupe_factor=2, random_seed=5)
  outputs = {}
  for workers, remote in ((1, False), (2, True)):
    paths = [str(tmp_path / f"w{workers}_{k}.tfrecord") for k in range(3)]
    config = pretraining_job.JobConfig(
        input_files=[os.path.join(data_dir, "corpus", "mobydick_12ch.txt")], output_files=paths,
        vocab_file=os.path.join(data_dir, VOCAB), do_lower_case=True, options=options,
        shard_bytes=20_000, num_workers=workers, compress=True)
    writer = pretraining_records.RecordWriter(paths, compress=True)
    if remote:
      writer.paths = [f"gs://bucket/{os.path.basename(p)}" for p in paths]  # what the job checks
    try:
      summary = pretraining_job.run_job(config, writer)
    finally:
      writer.close()
    assert summary.num_shards >= 5 and sum(summary.records_per_file) == summary.totals.instances
    outputs[workers] = [open(p, "rb").read() for p in paths]
  assert outputs[1] == outputs[2]
  assert not [n for n in os.listdir(tmp_path) if "pieces" in n]  # scratch removed


def test_free_workers_take_the_next_shard_and_the_output_keeps_shard_order(data_dir, tmp_path, repo_root):
  # Shard 0 is made slow in its worker. The other worker must not wait for it: it takes every
  # following shard (a fixed rotation would hand the slow worker shards 2, 4, ...). Shards then
  # finish out of order, and the files must still be those of one process.
  corpus = os.path.join(data_dir, "corpus", "mobydick_12ch.txt")
  log = tmp_path / "shards.log"
  flags = dict(dupe_factor=1, max_seq_length=64, max_predictions_per_seq=10, shard_size_mb=0.02)
  code = (
      "import os, time\n"
      "from bert_tf.pretraining_data import job as pretraining_job\n"
      "process = pretraining_job._ShardBuilder.process\n"
      "def slow_first(self, shard, *args):\n"
      "  if shard.index == 0:\n"
      "    time.sleep(3)\n"
      f"  with open({str(log)!r}, 'a') as f:\n"
      "    f.write(f'{os.getpid()} {shard.index}\\n')\n"
      "  yield from process(self, shard, *args)\n"
      "pretraining_job._ShardBuilder.process = slow_first\n"
      f"summary = pretraining_job.create_pretraining_data(input_file={corpus!r}, "
      f"output_file={str(tmp_path / 'w2_a.tfrecord') + ',' + str(tmp_path / 'w2_b.tfrecord')!r}, "
      f"vocab_file={os.path.join(data_dir, VOCAB)!r}, num_workers=2, **{flags!r})\n"
      "print(summary.num_shards)\n")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, PYTHONPATH=repo_root))
  assert done.returncode == 0, done.stderr[-2000:]
  num_shards = int(done.stdout.split()[-1])
  assert num_shards >= 5
  worker_of = {}
  for line in log.read_text().split("\n"):
    if line:
      pid, index = line.split()
      worker_of[int(index)] = pid
  assert sorted(worker_of) == list(range(num_shards))
  assert [i for i in worker_of if worker_of[i] == worker_of[0]] == [0]  # the slow one did shard 0 only
  run(data_dir, str(tmp_path / "w1_a.tfrecord") + "," + str(tmp_path / "w1_b.tfrecord"),
      input_file="corpus/mobydick_12ch.txt", num_workers=1, **flags)
  for name in ("a", "b"):
    assert (tmp_path / f"w2_{name}.tfrecord").read_bytes() == (tmp_path / f"w1_{name}.tfrecord").read_bytes()


def _run_startup_helpers(data_dir, repo_root, body):
  """Runs `body` after start-up helpers were started for 3 workers on a (pretended) 4-core machine,
  in a fresh process: the helpers are forked, which a process with TensorFlow loaded must not do.
  Returns the JSON that `body` prints."""
  code = f"""
import json, os, queue, time
import numpy as np
from bert_tf.pretraining_data import shards as corpus_shards
from bert_tf.pretraining_data import instances as pretraining_data
from bert_tf.pretraining_data import job as pretraining_job
from bert_tf.text import word_cache_tokenizer
corpus, vocab = {os.path.join(data_dir, "corpus", "mobydick_12ch.txt")!r}, {os.path.join(data_dir, VOCAB)!r}
os.cpu_count = lambda: 4
shards = list(corpus_shards.iter_text_shards([corpus], 20000))
fresh = word_cache_tokenizer.CachedFullTokenizer(vocab)

def same_as_a_worker(index, tokenized):
  documents, bad_lines, _ = tokenized
  lines, bad = corpus_shards.decode_lines(shards[index].data)
  expected = pretraining_data.split_documents(lines, fresh.tokenize_batch_ids)
  return bad == bad_lines and all(np.array_equal(getattr(documents, name), getattr(expected, name))
                                  for name in ("tokens", "sentence_starts", "document_starts"))

def wait_for(condition):
  deadline = time.time() + 60
  while not condition() and time.time() < deadline:
    startup._receive_available()
    time.sleep(0.01)

config = pretraining_job.JobConfig(
    input_files=[corpus], output_files=[], vocab_file=vocab, do_lower_case=True,
    options=pretraining_data.InstanceOptions(), shard_bytes=20000, num_workers=3)
""" + body
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, PYTHONPATH=repo_root))
  assert done.returncode == 0, done.stderr[-2000:]
  return json.loads(done.stdout.strip().split("\n")[-1])


def test_helpers_tokenize_the_first_round_of_shards_during_start_up_as_a_worker_would(data_dir,
                                                                                        repo_root):
  # Two helpers take shards 0, 2 and 1: one shard per worker, none beyond.
  result = _run_startup_helpers(data_dir, repo_root, """
startup = pretraining_job._StartupTokenizers.start(config)
wait_for(lambda: len(startup._done) == 3)
target = word_cache_tokenizer.CachedFullTokenizer(vocab)
startup.stop_starting(target)
taken = {index: startup.take(index) for index in range(5)}
startup.close()
print(json.dumps(dict(
    num_shards=len(shards), tokenized=[i for i in taken if taken[i] is not None],
    same=[same_as_a_worker(i, taken[i]) for i in range(3)],
    words_left=[len(taken[i][2]) for i in range(3)], cached=target.num_cached_words(),
    same_cache=dict(target.cached_words()) == dict(fresh.cached_words()))))
""")
  assert result["num_shards"] > 4
  assert result["tokenized"] == [0, 1, 2]
  assert result["same"] == [True, True, True]
  # The words of shards done before the workers start join the cache they inherit.
  assert result["words_left"] == [0, 0, 0]
  assert result["cached"] > 100 and result["same_cache"]


def test_a_shard_still_being_tokenized_by_a_helper_is_awaited_and_brings_its_words(data_dir, repo_root):
  # Tokenizing takes a helper 2 s here: the workers are "forked" while shards 0 and 1 are under
  # way. Those two are awaited rather than tokenized again; shard 2, not started yet, is left to
  # its worker.
  result = _run_startup_helpers(data_dir, repo_root, """
split = pretraining_data.split_documents
def slow_split(*args):
  time.sleep(2)
  return split(*args)
pretraining_data.split_documents = slow_split
startup = pretraining_job._StartupTokenizers.start(config)
pretraining_data.split_documents = split
wait_for(lambda: {0, 1} <= startup._started)
startup.stop_starting(word_cache_tokenizer.CachedFullTokenizer(vocab))
was_done = sorted(startup._done)
taken = {index: startup.take(index) for index in range(3)}
startup.close()
print(json.dumps(dict(was_done=was_done, tokenized=[i for i in taken if taken[i] is not None],
                      same=[same_as_a_worker(i, taken[i]) for i in range(2)],
                      words=[len(taken[i][2]) for i in range(2)])))
""")
  assert result["was_done"] == []
  assert result["tokenized"] == [0, 1]
  assert result["same"] == [True, True]
  assert min(result["words"]) > 100  # the worker taking the shard adds them to its cache


def test_a_worker_uses_the_shards_tokenized_during_start_up(data_dir):
  options = pretraining_data.InstanceOptions(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=1)
  builder = pretraining_job._ShardBuilder(os.path.join(data_dir, VOCAB), True, options)
  shards = list(corpus_shards.iter_text_shards([os.path.join(data_dir, "corpus", "mobydick_12ch.txt")],
                                               20000))

  def records(shard, tokenized=None):
    return b"".join(bytes(m[1]) for m in builder.process(shard, 100, tokenized) if m[0] == "chunk")

  def tokenized(shard):
    lines, bad_lines = corpus_shards.decode_lines(shard.data)
    return pretraining_data.split_documents(lines, builder.tokenizer.tokenize_batch_ids), bad_lines

  expected = records(shards[0])
  assert records(shards[0], (*tokenized(shards[0]), [])) == expected
  assert records(shards[0], (*tokenized(shards[1]), [])) != expected  # (wrong on purpose: it is used)
  assert builder.tokenizer.num_cached_words() > 0
  before = builder.tokenizer.num_cached_words()
  records(shards[0], (*tokenized(shards[0]), [("notaword-in-the-text", (1, 2))]))
  assert builder.tokenizer.num_cached_words() == before + 1  # a helper's words join the cache


def _alive(pid):
  """Whether process `pid` exists and is not a zombie."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and Linux's parent-death signal")
def test_workers_exit_when_the_main_process_is_killed(data_dir, tmp_path, repo_root):
  # The main process kills itself (SIGKILL: no clean-up) after the first shard; its workers must not
  # wait forever for shards that will never come.
  corpus = os.path.join(data_dir, "corpus", "mobydick.txt")
  code = (
      "import multiprocessing, os, signal, sys\n"
      "from bert_tf.pretraining_data import job as pretraining_job\n"
      "def die(*args, **kwargs):\n"
      "  print(' '.join(str(p.pid) for p in multiprocessing.active_children()), flush=True)\n"
      "  os.kill(os.getpid(), signal.SIGKILL)\n"
      "pretraining_job._Progress.shard_done = die\n"
      f"pretraining_job.create_pretraining_data(input_file={corpus!r}, "
      f"output_file={str(tmp_path / 'out.tfrecord')!r}, vocab_file={os.path.join(data_dir, VOCAB)!r}, "
      "dupe_factor=1, num_workers=2, shard_size_mb=0.05)\n")
  # Output to files, not pipes: a pipe would stay open as long as a stray worker lives.
  with open(tmp_path / "stdout", "w") as out, open(tmp_path / "stderr", "w") as err:
    returncode = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=err, timeout=300,
                                env=dict(os.environ, PYTHONPATH=repo_root)).returncode
  assert returncode == -9, (tmp_path / "stderr").read_text()[-2000:]
  workers = [int(pid) for pid in (tmp_path / "stdout").read_text().split()]
  # The two workers, and a start-up tokenizer helper if one is still finishing: all must exit.
  assert len(workers) >= 2
  import time
  deadline = time.time() + 20
  while any(_alive(pid) for pid in workers) and time.time() < deadline:
    time.sleep(0.1)
  assert not any(_alive(pid) for pid in workers)
  assert not (tmp_path / "out.tfrecord").exists()  # nothing under the final name
  # The killed run left its hidden temporary output and scratch folder; the next run removes them
  # (their owner is dead) and keeps what belongs to a live process or to another host.
  left = sorted(n for n in os.listdir(tmp_path) if n.startswith(".out.tfrecord."))
  assert any(".tmp-" in n for n in left) and any(".pieces-" in n for n in left), left
  import socket
  keep = [f".out.tfrecord.tmp-0123abcd-{os.getpid()}-{socket.gethostname()}",  # alive
          ".out.tfrecord.tmp-0123abcd-1-another-host", ".out.tfrecord.tmp-0123abcd"]  # elsewhere, old
  for name in keep:
    (tmp_path / name).write_text("x")
  run(data_dir, str(tmp_path / "out.tfrecord"), input_file="corpus/sample_text.txt", dupe_factor=1)
  assert sorted(n for n in os.listdir(tmp_path) if n.startswith(".out.tfrecord.")) == sorted(keep)
