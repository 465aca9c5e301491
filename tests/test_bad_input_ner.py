"""Bad input of run_ner.py, run as a user runs it (a subprocess).

Errors in the flags, the files they name and any line of any split the run reads (train, dev,
test) are found before TensorFlow is imported and before anything is written: exit status 2,
stderr holding the one `error:` line alone (no start-up noise), no --output_dir. The cases that
run_ner handles rather than refuses (a dev tag unknown to training, a word that tokenizes to
nothing) are checked in one short real run.
"""

import functools
import json
import os

from command_checks import TINY_CONFIG, run_command
from conftest import DATA_DIR, REPO_ROOT

VOCAB = os.path.join(DATA_DIR, "vocab", "bert-base-uncased-vocab.txt")
SCRIPT = os.path.join(REPO_ROOT, "run_ner.py")
TRAIN = ("EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\n"
         "Peter B-PER\nBlackburn I-PER\n\nBRUSSELS B-LOC\n1996-08-22 O\n\n") * 2
DEV = "Peter B-PER\nspoke O\n\nin O\nParis B-LOC\n"
NO_SENTENCES = "no sentences (the file is empty or holds only blank and -DOCSTART- lines)"

_run = functools.partial(run_command, SCRIPT)


def _data(folder, **files):
  """A data folder with train.txt (TRAIN unless given), dev.txt and test.txt (DEV unless given)."""
  folder.mkdir(parents=True)
  for split in ("train", "dev", "test"):
    text = files.get(split, TRAIN if split == "train" else DEV)
    (folder / f"{split}.txt").write_text(text, encoding="utf-8")
  return folder


def _args(tmp_path, data, **flags):
  config = tmp_path / "bert_config.json"
  if not config.exists():
    config.write_text(json.dumps(TINY_CONFIG))
  values = {"data_dir": data, "vocab_file": VOCAB, "bert_config_file": config,
            "output_dir": tmp_path / "out", "max_seq_length": 16, "train_batch_size": 2,
            "eval_batch_size": 4, "predict_batch_size": 4, "do_train": True, "do_eval": True,
            "do_predict": True}
  values.update(flags)
  args = [f"--{k}={v}" for k, v in values.items() if v is not None and not isinstance(v, bool)]
  return args + [f"--{k}" if v else f"--no{k}" for k, v in values.items() if isinstance(v, bool)]


def test_flag_file_and_line_errors_come_before_tensorflow_without_noise(tmp_path):
  one_column = _data(tmp_path / "one_column", dev="Peter B-PER\nspoke\n")
  outside = _data(tmp_path / "outside", dev="Peter S-PER\nspoke O\n")
  empty = _data(tmp_path / "empty", dev="")
  docstart = _data(tmp_path / "docstart", test="-DOCSTART- -X- O O\n\n")
  bad_train = _data(tmp_path / "bad_train", train="EU B-ORG\nrejects\n")
  no_dev = _data(tmp_path / "no_dev")
  os.remove(no_dev / "dev.txt")
  good = _data(tmp_path / "good")
  cases = [
      # Lines of dev and test, which run_ner read only after training before.
      (_args(tmp_path, one_column),
       f"{one_column / 'dev.txt'}:2: 1 column(s) but the file's first word line has a tag; every "
       "line needs the same layout"),
      (_args(tmp_path, outside),
       f"{outside / 'dev.txt'}:1: tag 'S-PER' is outside the BIO/IOB1 scheme (O, B-<type> or "
       "I-<type>)"),
      (_args(tmp_path, empty), f"{empty / 'dev.txt'}: {NO_SENTENCES}"),
      (_args(tmp_path, docstart), f"{docstart / 'test.txt'}: {NO_SENTENCES}"),
      (_args(tmp_path, bad_train),
       f"{bad_train / 'train.txt'}:2: 1 column(s) but the file's first word line has a tag; every "
       "line needs the same layout"),
      (_args(tmp_path, no_dev), f"--data_dir={no_dev}: no dev.txt or dev.jsonl"),
      # Flags and the files they name.
      (_args(tmp_path, good, do_train=False, do_eval=False, do_predict=False),
       "at least one of --do_train, --do_eval, --do_predict or --export_dir is needed"),
      (_args(tmp_path, good, doc_stride=15),
       "--doc_stride must be between 1 and --max_seq_length - 2 = 14, got 15"),
      (_args(tmp_path, tmp_path / "missing"), f"--data_dir={tmp_path / 'missing'}: not a directory"),
      (_args(tmp_path, good, vocab_file=tmp_path / "vocab.txt"),
       f"--vocab_file={tmp_path / 'vocab.txt'}: file not found"),
      (_args(tmp_path, good, bert_config_file=tmp_path / "none.json"),
       f"--bert_config_file={tmp_path / 'none.json'}: file not found"),
  ]
  for args, message in cases:
    proc = _run(args)
    assert proc.returncode == 2, (args, proc.stderr[-3000:])
    assert proc.stderr == f"error: {message}\n", args  # the line alone: no CUDA / absl start-up
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists(), args


def test_unknown_dev_tag_and_a_word_that_tokenizes_to_nothing_are_handled_as_documented(tmp_path):
  """A dev tag whose type training never saw is a warning naming file:line (its entity counts as
  missed); a control character, which WordPiece drops, is tagged as one [UNK] and keeps its line
  in test_predictions.txt."""
  data = _data(tmp_path / "data", dev="Peter B-PER\nat O\nGoogle B-COMPANY\n",
               test="Peter\n\x07\nBlackburn\n")
  proc = _run(_args(tmp_path, data, num_train_epochs=1, learning_rate=1e-3))
  assert proc.returncode == 0, proc.stderr[-3000:]
  warnings = [line for line in proc.stderr.splitlines() if "not among the training labels" in line]
  assert len(warnings) == 1, proc.stderr[-3000:]
  assert f"{data / 'dev.txt'}:3: tag B-COMPANY is not among the training labels" in warnings[0]
  with open(tmp_path / "out" / "eval_results.txt", encoding="utf-8") as f:
    results = dict(line.strip().split(" = ") for line in f)
  assert results["eval_num_gold"] == "2"  # the COMPANY entity is scored (and missed)
  with open(tmp_path / "out" / "test_predictions.txt", encoding="utf-8") as f:
    lines = [line for line in f.read().splitlines() if line]  # a blank line ends the sentence
  assert [line.split()[0] for line in lines] == ["Peter", "\x07", "Blackburn"]
  assert all(len(line.split()) == 2 for line in lines)  # word, predicted tag (no gold)
