"""Bad input and faults of create_pretraining_data.py, run as a user runs it (a subprocess).

Each case asserts the exit status, the one `error:` line (naming the flag, file or line at fault),
no traceback, and that no output, temporary or manifest is left behind. Cases that were already
handled are kept in the matrix so that it documents the command's behaviour (docs/errors.md).
"""

import errno
import os
import resource
import signal
import subprocess
import sys
import uuid

import pytest

from conftest import DATA_DIR, REPO_ROOT

VOCAB = os.path.join(DATA_DIR, "vocab", "bert-base-uncased-vocab.txt")
CORPUS = os.path.join(DATA_DIR, "corpus", "mobydick_12ch.txt")  # 118 KB: ~300 KB of records
SCRIPT = os.path.join(REPO_ROOT, "create_pretraining_data.py")


def _run(args, preexec_fn=None):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True, env=env,
                        timeout=120, preexec_fn=preexec_fn)


def _flags(input_file, output_file, **extra):
  flags = {"input_file": input_file, "output_file": output_file, "vocab_file": VOCAB,
           "dupe_factor": 1, "num_workers": 1}
  flags.update(extra)
  return [f"--{k}={v}" for k, v in flags.items()]


def _error_line(proc):
  """The single `error:` line of a failed run (asserting there is exactly one, and no traceback)."""
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  return errors[0]


def _assert_fails(proc, message):
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert _error_line(proc) == f"error: {message}"


@pytest.fixture
def out_dir(tmp_path):
  path = tmp_path / "out"
  path.mkdir()
  return path


def test_flag_and_input_file_errors_are_one_line_and_write_nothing(tmp_path, out_dir):
  out = str(out_dir / "x.tfrecord")
  folder = tmp_path / "corpus"
  folder.mkdir()
  (folder / "a.txt").write_text("One sentence.\n")
  nested = tmp_path / "nested"
  (nested / "sub1").mkdir(parents=True)
  random_bytes = tmp_path / "random.bin"
  random_bytes.write_bytes(os.urandom(4096))
  utf16 = tmp_path / "utf16.txt"
  utf16.write_bytes("A sentence in UTF-16.\nAnother one.\n".encode("utf-16"))
  latin1 = tmp_path / "latin1.txt"
  line = "Un été à Paris, déjà très chaud.\n".encode("latin-1")
  latin1.write_bytes(line * 20)
  share = sum(byte >= 0x80 for byte in line) / len(line)  # each accent is one stray byte
  empty = tmp_path / "empty.txt"
  empty.write_text("\n\n")
  cases = [
      # Already handled before issue 18; kept so that the matrix documents them.
      (["--output_file=" + out, "--vocab_file=" + VOCAB], "--input_file is required"),
      (_flags(str(tmp_path / "missing*.txt"), out),
       f"--input_file: no file matches {str(tmp_path / 'missing*.txt')!r}"),
      (_flags(CORPUS, out, vocab_file=str(tmp_path / "no_vocab.txt")),
       f"--vocab_file: {tmp_path / 'no_vocab.txt'} does not exist"),
      (_flags(CORPUS, str(out_dir)), f"--output_file {out_dir} is a directory"),
      (_flags(CORPUS, out, max_seq_length=4),
       "--max_seq_length=4: must be at least 5 ([CLS] A [SEP] B [SEP] with one token on each side)"),
      (_flags(str(empty), out), f"--input_file={empty}: the input has no text (no non-empty line)"),
      # Issue 18, case 11: a directory, and input that is not text.
      (_flags(str(folder), out),
       f"--input_file: {folder} is a directory; name the files in it, e.g. {folder}/*.txt"),
      (_flags(str(nested / "sub*"), out),
       f"--input_file: {str(nested / 'sub*')!r} matches only directories ({nested / 'sub1'}); "
       f"name the files in it, e.g. {nested / 'sub1'}/*.txt"),
      (_flags(str(random_bytes), out), None),  # the NUL's offset depends on the random bytes
      (_flags(str(utf16), out),
       f"--input_file: {utf16}: binary data, not text (a NUL byte at offset 3; UTF-16 text? "
       "convert it to UTF-8, e.g. with iconv -f UTF-16 -t UTF-8)"),
      (_flags(f"{CORPUS},{latin1}", out),
       f"--input_file: {latin1}: not UTF-8 text ({100 * share:.0f}% of its first {20 * len(line)} "
       "bytes do not decode as "
       "UTF-8: binary data, or another encoding to convert with iconv -t UTF-8)"),
  ]
  for args, message in cases:
    proc = _run(args)
    if message is None:
      assert proc.returncode == 2, proc.stderr[-3000:]
      assert _error_line(proc).startswith(
          f"error: --input_file: {random_bytes}: binary data, not text (a NUL byte at offset ")
    else:
      _assert_fails(proc, message)
    assert os.listdir(out_dir) == [], (args, os.listdir(out_dir))


def test_undecodable_bytes_are_a_warning_naming_the_first_bad_line(tmp_path, out_dir):
  good = tmp_path / "good.txt"
  good.write_bytes(open(CORPUS, "rb").read()[:20000].rsplit(b"\n", 1)[0] + b"\n\n")
  text = open(os.path.join(DATA_DIR, "corpus", "sample_text.txt"), "rb").read()
  bad = tmp_path / "bad.txt"  # two stray bytes, lines 5 and 13: the file stays text
  lines = text.split(b"\n")
  lines[4] += b" \xff"
  lines[12] += b" \xc3"
  bad.write_bytes(b"\n".join(lines))
  out = out_dir / "x.tfrecord"
  # Two files in one shard: the line is counted in the file it belongs to, not in the shard.
  proc = _run(_flags(f"{good},{bad}", str(out)))
  assert proc.returncode == 0, proc.stderr[-3000:]
  warnings = [line for line in proc.stderr.splitlines() if "not valid UTF-8" in line]
  assert len(warnings) == 1, proc.stderr[-3000:]
  assert warnings[0].endswith(f"] {bad}:5: not valid UTF-8 (2 line(s) in all, this one first); "
                              "their bad bytes became U+FFFD")
  assert sorted(os.listdir(out_dir)) == ["x.tfrecord", "x.tfrecord.manifest.json"]


def _size_limit(max_bytes):
  """preexec_fn: writes past `max_bytes` fail with EFBIG ("File too large"), as on a full disk."""
  def apply():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
  return apply


@pytest.mark.parametrize("num_workers", [1, 2])
def test_a_file_size_limit_is_a_clean_error_with_nothing_left(out_dir, num_workers):
  """Issue 18, case 6, as any CI can run it: the records outgrow RLIMIT_FSIZE (with 2 workers the
  failing write happens in a worker process)."""
  out = out_dir / "x.tfrecord"
  proc = _run(_flags(CORPUS, str(out), num_workers=num_workers, shard_size_mb=0.05),
              preexec_fn=_size_limit(40000))
  _assert_fails(proc, f"--output_file: cannot write {out}: File too large (no complete-looking "
                      "output was left; free space or choose another folder)")
  assert os.listdir(out_dir) == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
  """A 64 KiB tmpfs, when this process may mount one (root with CAP_SYS_ADMIN)."""
  mount_point = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
  mount_point.mkdir()
  proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                        capture_output=True, text=True)
  if proc.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); "
                "test_a_file_size_limit_is_a_clean_error_with_nothing_left covers the same path")
  yield mount_point
  subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_is_a_clean_error_with_nothing_left(tiny_tmpfs):
  """Issue 18, case 6, on a real full file system (ENOSPC), in the worker processes."""
  out = tiny_tmpfs / "x.tfrecord"
  proc = _run(_flags(CORPUS, str(out), num_workers=2, shard_size_mb=0.05))
  _assert_fails(proc, f"--output_file: cannot write {out}: No space left on device (no "
                      "complete-looking output was left; free space or choose another folder)")
  assert os.listdir(tiny_tmpfs) == []


def test_a_manifest_that_cannot_be_written_takes_its_records_away(tmp_path, monkeypatch):
  """The records are renamed into place before their manifests: when the disk fills up between
  the two, the record files are removed too (one without its manifest would look finished)."""
  from bert_tf import features
  from bert_tf.errors import UsageError
  from bert_tf.pretraining_data import job
  written = []
  real = features.write_manifest

  def fill_up(path, manifest):
    if written:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    written.append(path)
    real(path, manifest)

  monkeypatch.setattr(features, "write_manifest", fill_up)
  outputs = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
  with pytest.raises(UsageError) as error:
    job.create_pretraining_data(CORPUS, ",".join(outputs), VOCAB, dupe_factor=1, num_workers=1)
  assert str(error.value) == (f"--output_file: cannot write the outputs in {tmp_path}: No space "
                              "left on device (no complete-looking output was left; free space "
                              "or choose another folder)")
  assert written == [outputs[0]] and os.listdir(tmp_path) == []
