"""Resuming a run from its output folder: the newest checkpoint that can be read.

A writer stopped mid-save (preemption, a full disk, a killed process) leaves the newest checkpoint
cut short; the one before it is intact. `restore_newest` skips checkpoints whose files cannot be
read, with a warning naming each, and restores the newest good one. A checkpoint that reads fine
but does not fit the model (another config or task) is not skipped: the caller's error says so.
Used by run_pretraining (`pretraining.training.CheckpointKeeper`) and run_classifier/run_ner
(`finetuning.classification.restore_or_initialize`).
"""

import os

import tensorflow as tf
from absl import logging

from bert_tf.errors import UsageError, first_line


def _step_of(prefix):
  tail = prefix.rsplit("-", 1)[-1]
  return int(tail) if tail.isdigit() else -1


def checkpoint_candidates(directory, name="ckpt"):
  """The checkpoints of `directory`, newest first: those its `checkpoint` file lists, then any
  other `<name>-N` whose index exists (by step). [] for a folder that does not exist."""
  if not directory or not tf.io.gfile.isdir(directory):
    return []
  paths = []
  state = tf.train.get_checkpoint_state(directory)
  if state is not None:
    listed = list(state.all_model_checkpoint_paths or [])
    if state.model_checkpoint_path and state.model_checkpoint_path not in listed:
      listed.append(state.model_checkpoint_path)
    paths = [p if os.path.isabs(p) or "://" in p else os.path.join(directory, p)
             for p in reversed(listed)]
  found = [i[:-len(".index")] for i in tf.io.gfile.glob(os.path.join(directory, f"{name}-*.index"))]
  paths += sorted((p for p in found if p not in paths), key=_step_of, reverse=True)
  return paths


def restore_newest(checkpoint, directory, does_not_fit, flag="--output_dir", name="ckpt"):
  """Restores into `checkpoint` the newest checkpoint of `directory` that can be read.

  Args:
    checkpoint: a `tf.train.Checkpoint` of the model (and optimizer).
    directory: the run's output folder.
    does_not_fit: `(path, reason) -> str`, the message of the `UsageError` raised for a readable
      checkpoint that does not match the model (restoring an older one would not help).
    flag: the flag that named `directory`, for the messages.
    name: the checkpoints' file prefix.

  Returns:
    the path restored, or None when `directory` holds no checkpoint.

  Raises:
    UsageError: a checkpoint does not fit the model, or none of them can be read.
  """
  failures = []
  for path in checkpoint_candidates(directory, name):
    if not tf.io.gfile.exists(path + ".index"):
      failures.append((path, "its .index file is missing"))
      continue
    try:
      tf.train.load_checkpoint(path).get_variable_to_shape_map()  # the index: cut short?
    except (tf.errors.OpError, IndexError, ValueError) as e:
      failures.append((path, first_line(e)))
      continue
    try:
      checkpoint.restore(path).assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:  # objects or shapes of another model
      raise UsageError(does_not_fit(path, first_line(e))) from None
    except (tf.errors.OpError, IndexError) as e:  # the data files: cut short or corrupt
      failures.append((path, first_line(e)))
      continue
    for bad, why in failures:
      logging.warning("%s: cannot be restored (%s), truncated or corrupt; resuming from %s",
                      bad, why, path)
    return path
  if failures:
    bad, why = failures[0]
    raise UsageError(
        f"{flag}={directory}: no checkpoint can be restored (the newest, {bad}: {why}; "
        f"{len(failures)} tried); delete the broken ones or choose another {flag}")
  return None
