"""create_pretraining_data's compiled loops, from the C extension built at install time, else numba.

Two implementations of the same kernels give byte-identical instances and records:

- `compiled`: the C extension `_kernels` (`_kernels.c`), built by `pip install` (also
  `pip install -e .`) when a C compiler is present, and shipped compiled in a wheel. Nothing is
  compiled when it runs, so the first run of a fresh environment (a CI job, a Docker image, a Beam
  worker, a read-only site-packages) is as fast as every later one, and numba is never imported.
- `numba`: `instance_kernels`, `record_kernels` and `pyrandom_jit`, compiled by numba on first use
  and cached on disk (beside the modules, or in `NUMBA_CACHE_DIR`). The fallback where the
  extension could not be built (no compiler at install time); its first run in an environment
  compiles for ~15-20 s.

`BERT_TF_KERNELS=numba` (or `compiled`) forces one; the default, `auto`, takes the extension when
it imports (and warns once when it does not). `backend()` says which one runs.
"""

import os

from absl import logging
import numpy as np

from bert_tf import features
from bert_tf.errors import UsageError

_BACKENDS = ("auto", "compiled", "numba")

try:
  from bert_tf.pretraining_data import _kernels as _compiled
  _COMPILED_ERROR = None
except ImportError as error:  # not built: no compiler when the package was installed
  _compiled = None
  _COMPILED_ERROR = error

_KEYS = [name.encode() for name in features.PRETRAINING_FEATURE_NAMES]
_KEY_BYTES = np.frombuffer(b"".join(_KEYS), dtype=np.uint8)
_KEY_LENGTHS = np.array([len(key) for key in _KEYS], dtype=np.int64)
# a_start, a_length, b_start, b_length, is_random_next, num_masked, masked_positions, masked_tokens
_INSTANCE_DTYPES = (np.int64, np.int32, np.int64, np.int32, np.uint8, np.int32, np.int32, np.int32)


def backend():
  """'compiled' or 'numba': the implementation this process uses (see the module docstring)."""
  choice = os.environ.get("BERT_TF_KERNELS", "auto").strip().lower() or "auto"
  if choice not in _BACKENDS:
    raise UsageError(f"BERT_TF_KERNELS={choice!r}: expected one of {', '.join(_BACKENDS)}")
  if choice == "numba":
    return "numba"
  if _compiled is None:
    if choice == "compiled":
      raise UsageError(f"BERT_TF_KERNELS=compiled, but the C extension bert_tf.pretraining_data._kernels "
                       f"is not built ({_COMPILED_ERROR}); reinstall with a C compiler: pip install -e .")
    logging.log_first_n(logging.WARNING, "the C kernels of bert_tf are not built (%s): using numba, whose "
                        "first run in an environment compiles them (~20 s); reinstall with a C compiler "
                        "to avoid it", 1, _COMPILED_ERROR)
    return "numba"
  return "compiled"


def _c_array(values, dtype):
  return np.ascontiguousarray(values, dtype=dtype)


def create_instances(tokens, sentence_starts, document_starts, seed, max_seq_length, max_predictions,
                     masked_lm_prob, short_seq_prob, dupe_factor, whole_word, is_subword,
                     random_word_ids, mask_id):
  """All instances of a shard in output order, drawn from `random.Random(seed)`.

  Returns (a_start int64, a_length int32, b_start int64, b_length int32, is_random_next uint8,
  num_masked int32, masked_positions int32 [n, max_predictions], masked_tokens int32 [n, ...]).
  """
  from bert_tf.pretraining_data import pyrandom
  state = pyrandom.state_from_seed(seed)
  if backend() == "numba":
    from bert_tf.pretraining_data import instance_kernels
    return instance_kernels.create_instances(
        tokens, sentence_starts, document_starts, state, max_seq_length, max_predictions,
        masked_lm_prob, short_seq_prob, dupe_factor, whole_word, is_subword, random_word_ids, mask_id)
  fields = _compiled.create_instances(
      _c_array(tokens, np.int32), _c_array(sentence_starts, np.int64), _c_array(document_starts, np.int64),
      state, int(max_seq_length), int(max_predictions), float(masked_lm_prob), float(short_seq_prob),
      int(dupe_factor), bool(whole_word), _c_array(is_subword, np.uint8), _c_array(random_word_ids, np.int32),
      int(mask_id))
  arrays = [np.frombuffer(field, dtype) for field, dtype in zip(fields, _INSTANCE_DTYPES)]
  arrays[6:] = [array.reshape(-1, max_predictions) for array in arrays[6:]]
  return tuple(arrays)


def serialize(tokens, a_start, a_length, b_start, b_length, is_random_next, num_masked, masked_positions,
              masked_tokens, cls_id, sep_id, max_seq_length, framed):
  """Serializes instances (in order) into one uint8 buffer; returns it and each record's end offset."""
  if backend() == "numba":
    from bert_tf.pretraining_data import record_kernels as k
    return k.serialize(tokens, a_start, a_length, b_start, b_length, is_random_next, num_masked,
                       masked_positions, masked_tokens, cls_id, sep_id, max_seq_length, framed,
                       k.CRC_TABLE, k.KEY_BYTES, k.KEY_LENGTHS)
  args = (_c_array(tokens, np.int32), _c_array(a_start, np.int64), _c_array(a_length, np.int32),
          _c_array(b_start, np.int64), _c_array(b_length, np.int32), _c_array(is_random_next, np.uint8),
          _c_array(num_masked, np.int32), _c_array(masked_positions, np.int32),
          _c_array(masked_tokens, np.int32), int(cls_id), int(sep_id), int(max_seq_length),
          int(masked_positions.shape[1]), bool(framed), _KEY_BYTES, _KEY_LENGTHS)
  ends = np.empty(len(a_start), np.int64)
  total = _compiled.serialize(*args, ends, None)   # pass 1: sizes
  buffer = np.empty(total, np.uint8)
  _compiled.serialize(*args, ends, buffer)         # pass 2: bytes
  return buffer, ends


def masked_crc(data):
  """TFRecord's masked CRC-32C of a bytes-like object, as an int."""
  if backend() == "numba":
    from bert_tf.pretraining_data import record_kernels as k
    buffer = np.frombuffer(data, dtype=np.uint8)
    return int(k.masked_crc(k.CRC_TABLE, buffer, 0, len(buffer)))
  return _compiled.masked_crc(data)
