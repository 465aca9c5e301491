"""The compiled loops of create_pretraining_data: the C extension runs on a cold path, equal to numba.

The C extension (`bert_tf/pretraining_data/_kernels.c`, built by `pip install -e .`) is what runs by
default; numba's kernels are its fallback and the reference here. These tests check that a fresh
process (an empty numba cache, as in a new CI job, Docker image or Beam worker) uses the compiled
kernels and never imports numba, and that both give the same instances and bytes.
"""

import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bert_tf.errors import UsageError
from bert_tf.pretraining_data import instances
from bert_tf.pretraining_data import kernels
from bert_tf.text import word_cache_tokenizer

VOCAB = "vocab/bert-base-uncased-vocab.txt"


def test_the_compiled_extension_is_built_and_chosen(monkeypatch):
  monkeypatch.delenv("BERT_TF_KERNELS", raising=False)
  assert kernels.backend() == "compiled", (
      "bert_tf.pretraining_data._kernels is not built: run `pip install -e .` with a C compiler "
      "(without it create_pretraining_data falls back to numba and compiles on its first run)")


def test_backend_choice_is_checked(monkeypatch):
  monkeypatch.setenv("BERT_TF_KERNELS", "numba")
  assert kernels.backend() == "numba"
  monkeypatch.setenv("BERT_TF_KERNELS", "fortran")
  with pytest.raises(UsageError, match="BERT_TF_KERNELS='fortran'"):
    kernels.backend()
  monkeypatch.setenv("BERT_TF_KERNELS", "compiled")
  monkeypatch.setattr(kernels, "_compiled", None)
  with pytest.raises(UsageError, match="pip install -e ."):
    kernels.backend()
  monkeypatch.setenv("BERT_TF_KERNELS", "auto")
  assert kernels.backend() == "numba"  # the fallback where the extension is missing


# A fresh process with an empty numba cache runs the whole job, locally and as a Beam worker does
# (the DoFn's set-up and processing, in-process), then reports what it loaded.
_COLD_RUN = """
import json, sys
from bert_tf.pretraining_data import job, kernels
out, beam_out, corpus, vocab = sys.argv[1:]
job.create_pretraining_data(input_file=corpus, output_file=out, vocab_file=vocab, dupe_factor=2,
                            num_workers=1)
from bert_tf.pretraining_data import beam
job.create_pretraining_data(input_file=corpus, output_file=beam_out, vocab_file=vocab, dupe_factor=2,
                            job_runner=beam.BeamJobRunner(["--direct_num_workers=1",
                                                           "--direct_running_mode=in_memory"]))
print(json.dumps({"backend": kernels.backend(), "numba_imported": "numba" in sys.modules}))
"""


def test_a_cold_process_compiles_nothing_and_never_imports_numba(repo_root, data_dir, tmp_path):
  cache = tmp_path / "numba_cache"
  cache.mkdir()
  env = {k: v for k, v in os.environ.items() if k != "BERT_TF_KERNELS"}
  env.update(NUMBA_CACHE_DIR=str(cache), PYTHONPATH=repo_root)
  out, beam_out = str(tmp_path / "local.tfrecord"), str(tmp_path / "beam.tfrecord")
  done = subprocess.run(
      [sys.executable, "-c", _COLD_RUN, out, beam_out, os.path.join(data_dir, "corpus/sample_text.txt"),
       os.path.join(data_dir, VOCAB)], env=env, cwd=str(tmp_path), capture_output=True, text=True,
      timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(done.stdout.strip().splitlines()[-1])
  assert report == {"backend": "compiled", "numba_imported": False}
  assert list(cache.iterdir()) == []  # nothing compiled, nothing cached
  with open(out, "rb") as a, open(beam_out, "rb") as b:
    assert a.read() == b.read()


@functools.lru_cache(maxsize=None)
def _tokenizer(vocab_file):
  return word_cache_tokenizer.CachedFullTokenizer(vocab_file, do_lower_case=True)


@pytest.fixture
def tokenizer(data_dir):
  return _tokenizer(os.path.join(data_dir, VOCAB))


def _documents(data_dir, corpus, tokenizer):
  with open(os.path.join(data_dir, "corpus", corpus), encoding="utf-8") as f:
    lines = [line.strip() for line in f]
  return instances.split_documents(lines, tokenizer.tokenize_batch_ids)


def _run_kernels(monkeypatch, backend, documents, tables, seed, options):
  monkeypatch.setenv("BERT_TF_KERNELS", backend)
  arrays = kernels.create_instances(
      documents.tokens, documents.sentence_starts, documents.document_starts, seed,
      options["max_seq_length"], options["max_predictions"], options["masked_lm_prob"],
      options["short_seq_prob"], options["dupe_factor"], options["whole_word"], tables.is_subword,
      tables.random_word_ids, tables.mask_id)
  records = [kernels.serialize(documents.tokens, *arrays, tables.cls_id, tables.sep_id,
                               options["max_seq_length"], framed) for framed in (True, False)]
  return arrays, records


# Each case exercises other draws: whole-word groups, many short targets (randint, the arrays'
# growth beyond the first guess), truncation of long pairs, the smallest legal max_seq_length,
# more predictions than candidates, a single document, CJK text.
CASES = [
    ("mobydick_12ch.txt", 7, dict(max_seq_length=128, max_predictions=20, masked_lm_prob=0.15,
                                  short_seq_prob=0.1, dupe_factor=2, whole_word=True)),
    ("mobydick_12ch.txt", 11, dict(max_seq_length=32, max_predictions=5, masked_lm_prob=0.3,
                                   short_seq_prob=0.9, dupe_factor=3, whole_word=False)),
    ("sample_text.txt", 12345, dict(max_seq_length=5, max_predictions=1, masked_lm_prob=0.15,
                                    short_seq_prob=1.0, dupe_factor=2, whole_word=True)),
    ("sample_text.txt", 2**40 + 3, dict(max_seq_length=512, max_predictions=80, masked_lm_prob=0.5,
                                        short_seq_prob=0.0, dupe_factor=1, whole_word=False)),
    ("chinese_novels.txt", 3, dict(max_seq_length=64, max_predictions=10, masked_lm_prob=0.15,
                                   short_seq_prob=0.1, dupe_factor=1, whole_word=False)),
    ("unicode_stress.txt", 5, dict(max_seq_length=16, max_predictions=3, masked_lm_prob=0.15,
                                   short_seq_prob=0.5, dupe_factor=4, whole_word=True)),
]


@pytest.mark.parametrize("corpus, seed, options", CASES)
def test_compiled_kernels_equal_numba_kernels(monkeypatch, data_dir, tokenizer, corpus, seed, options):
  documents = _documents(data_dir, corpus, tokenizer)
  tables = instances.VocabTables.from_vocab(tokenizer.vocab)
  c_arrays, c_records = _run_kernels(monkeypatch, "compiled", documents, tables, seed, options)
  numba_arrays, numba_records = _run_kernels(monkeypatch, "numba", documents, tables, seed, options)
  assert len(c_arrays[0]) > 0
  for c, reference in zip(c_arrays, numba_arrays):
    assert c.dtype == reference.dtype and c.shape == reference.shape
    np.testing.assert_array_equal(c, reference)
  for (c_buffer, c_ends), (buffer, ends) in zip(c_records, numba_records):
    np.testing.assert_array_equal(c_ends, ends)
    assert c_buffer.tobytes() == buffer.tobytes()


def test_the_instances_from_the_extension_are_ordinary_writable_arrays(monkeypatch, data_dir, tokenizer):
  documents = _documents(data_dir, "sample_text.txt", tokenizer)
  tables = instances.VocabTables.from_vocab(tokenizer.vocab)
  arrays, _ = _run_kernels(monkeypatch, "compiled", documents, tables, 1, CASES[0][2])
  for array in arrays:
    assert array.flags.writeable and array.flags.c_contiguous
  assert arrays[6].shape == (len(arrays[0]), 20)
  assert int(arrays[5].max()) <= 20


def test_masked_crc_equal_on_every_length(monkeypatch):
  data = np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes()
  results = {}
  for backend in ("compiled", "numba"):
    monkeypatch.setenv("BERT_TF_KERNELS", backend)
    results[backend] = [kernels.masked_crc(data[:n]) for n in range(0, 300, 7)]
  assert results["compiled"] == results["numba"]
  monkeypatch.setenv("BERT_TF_KERNELS", "compiled")
  assert kernels.masked_crc(b"") == 0xA282EAD8  # CRC-32C of nothing is 0, then the TFRecord mask


def test_the_extension_rejects_arrays_of_the_wrong_size(monkeypatch, data_dir, tokenizer):
  from bert_tf.pretraining_data import _kernels
  documents = _documents(data_dir, "sample_text.txt", tokenizer)
  tables = instances.VocabTables.from_vocab(tokenizer.vocab)
  with pytest.raises(ValueError, match="state"):
    _kernels.create_instances(documents.tokens, documents.sentence_starts, documents.document_starts,
                              np.zeros(600, np.uint32), 128, 20, 0.15, 0.1, 1, False,
                              tables.is_subword.astype(np.uint8), tables.random_word_ids, tables.mask_id)
