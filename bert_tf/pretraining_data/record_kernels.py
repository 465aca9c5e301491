"""The numba serializer of `records`: instances -> `tf.train.Example` bytes.

The fallback of the C extension and its reference, as `instance_kernels` (see `kernels`).
"""

import numba
import numpy as np

from bert_tf import features

# Serialized feature order: the schema's (input_ids, input_mask, segment_ids, masked_lm_positions,
# masked_lm_ids, masked_lm_weights, next_sentence_labels); `serialize` indexes features by position.
_FEATURE_ORDER = features.PRETRAINING_FEATURE_NAMES


def _crc32c_tables():
  """Lookup tables for CRC-32C (Castagnoli), eight of them for slicing-by-8."""
  tables = np.zeros((8, 256), dtype=np.uint32)
  for n in range(256):
    c = n
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    tables[0, n] = c
  for n in range(256):
    c = int(tables[0, n])
    for t in range(1, 8):
      c = int(tables[0, c & 0xFF]) ^ (c >> 8)
      tables[t, n] = c
  return tables


CRC_TABLE = _crc32c_tables()
_KEYS = [np.frombuffer(name.encode(), dtype=np.uint8) for name in _FEATURE_ORDER]


@numba.njit(cache=True)
def _crc32c(tables, buffer, begin, end):
  crc = np.uint32(0xFFFFFFFF)
  i = begin
  while i + 8 <= end:  # slicing-by-8: eight bytes per step
    low = crc ^ (np.uint32(buffer[i]) | (np.uint32(buffer[i + 1]) << np.uint32(8)) |
                 (np.uint32(buffer[i + 2]) << np.uint32(16)) | (np.uint32(buffer[i + 3]) << np.uint32(24)))
    crc = (tables[7, low & np.uint32(0xFF)] ^ tables[6, (low >> np.uint32(8)) & np.uint32(0xFF)] ^
           tables[5, (low >> np.uint32(16)) & np.uint32(0xFF)] ^ tables[4, low >> np.uint32(24)] ^
           tables[3, buffer[i + 4]] ^ tables[2, buffer[i + 5]] ^ tables[1, buffer[i + 6]] ^
           tables[0, buffer[i + 7]])
    i += 8
  while i < end:
    crc = tables[0, (crc ^ np.uint32(buffer[i])) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
    i += 1
  return crc ^ np.uint32(0xFFFFFFFF)


@numba.njit(cache=True)
def masked_crc(table, buffer, begin, end):
  crc = np.uint64(_crc32c(table, buffer, begin, end))
  rotated = ((crc >> np.uint64(15)) | (crc << np.uint64(17))) & np.uint64(0xFFFFFFFF)
  return np.uint32((rotated + np.uint64(0xA282EAD8)) & np.uint64(0xFFFFFFFF))


@numba.njit(cache=True)
def _varint_size(value):
  size = 1
  while value >= 128:
    value >>= 7
    size += 1
  return size


@numba.njit(cache=True)
def _put_varint(buffer, pos, value):
  while value >= 128:
    buffer[pos] = np.uint8((value & 127) | 128)
    value >>= 7
    pos += 1
  buffer[pos] = np.uint8(value)
  return pos + 1


@numba.njit(cache=True)
def _put_uint32(buffer, pos, value):
  for k in range(4):
    buffer[pos + k] = np.uint8((value >> np.uint32(8 * k)) & np.uint32(0xFF))
  return pos + 4


@numba.njit(cache=True)
def _put_bytes(buffer, pos, data):
  for k in range(data.shape[0]):
    buffer[pos + k] = data[k]
  return pos + data.shape[0]


@numba.njit(cache=True)
def _entry_size(key_length, list_payload):
  """Size of a map entry (without its own tag/length) holding one list feature."""
  list_size = 1 + _varint_size(list_payload) + list_payload        # value: packed field 1
  feature_size = 1 + _varint_size(list_size) + list_size           # Feature: field 2 or 3
  return 1 + _varint_size(key_length) + key_length + 1 + _varint_size(feature_size) + feature_size


@numba.njit(cache=True)
def _put_entry_header(buffer, pos, key, list_payload, feature_field):
  """Writes the entry's tag/length, key and the headers down to the packed values."""
  list_size = 1 + _varint_size(list_payload) + list_payload
  feature_size = 1 + _varint_size(list_size) + list_size
  entry = 1 + _varint_size(key.shape[0]) + key.shape[0] + 1 + _varint_size(feature_size) + feature_size
  buffer[pos] = 0x0A  # Features.feature, length-delimited
  pos = _put_varint(buffer, pos + 1, entry)
  buffer[pos] = 0x0A  # MapEntry.key
  pos = _put_varint(buffer, pos + 1, key.shape[0])
  pos = _put_bytes(buffer, pos, key)
  buffer[pos] = 0x12  # MapEntry.value
  pos = _put_varint(buffer, pos + 1, feature_size)
  buffer[pos] = np.uint8(feature_field << 3 | 2)  # Feature.float_list (2) / int64_list (3)
  pos = _put_varint(buffer, pos + 1, list_size)
  buffer[pos] = 0x0A  # packed values
  return _put_varint(buffer, pos + 1, list_payload)


@numba.njit(cache=True)
def fill_instance(tokens, a_start, a_length, b_start, b_length, num_masked, positions, replacements, cls_id,
                  sep_id, input_ids, original_ids):
  """Writes the padded, masked `input_ids` of one instance and the ids it had at the masked positions."""
  num_tokens = a_length + b_length + 3
  input_ids[0] = cls_id
  input_ids[1:a_length + 1] = tokens[a_start:a_start + a_length]
  input_ids[a_length + 1] = sep_id
  input_ids[a_length + 2:num_tokens - 1] = tokens[b_start:b_start + b_length]
  input_ids[num_tokens - 1] = sep_id
  input_ids[num_tokens:] = 0
  original_ids[:] = 0
  for k in range(num_masked):
    original_ids[k] = input_ids[positions[k]]
    input_ids[positions[k]] = replacements[k]
  return num_tokens


@numba.njit(cache=True)
def _packed_size(values, count):
  size = 0
  for k in range(count):
    size += _varint_size(values[k])
  return size


@numba.njit(cache=True)
def _features_size(key_lengths, payloads):
  """Size of the Features message: seven length-prefixed map entries."""
  size = 0
  for f in range(key_lengths.shape[0]):
    entry = _entry_size(key_lengths[f], payloads[f])
    size += 1 + _varint_size(entry) + entry
  return size


@numba.njit(cache=True)
def serialize(tokens, a_start, a_length, b_start, b_length, is_random_next, num_masked, masked_positions,
              masked_tokens, cls_id, sep_id, max_seq_length, framed, crc_table, keys, key_lengths):
  """Serializes instances [in order] into one buffer; returns it and each record's end offset."""
  count = a_start.shape[0]
  max_predictions = masked_positions.shape[1]
  input_ids = np.zeros(max_seq_length, np.int64)    # [max_seq_length]
  original_ids = np.zeros(max_predictions, np.int64)  # [max_predictions_per_seq]
  payloads = np.zeros(7, np.int64)  # packed byte sizes of the features, in _FEATURE_ORDER
  payloads[1] = max_seq_length
  payloads[2] = max_seq_length
  payloads[5] = 4 * max_predictions
  payloads[6] = 1

  # Pass 1: sizes, so the buffer is allocated once.
  sizes = np.empty(count, np.int64)
  ends = np.empty(count, np.int64)
  total = 0
  for r in range(count):
    fill_instance(tokens, a_start[r], a_length[r], b_start[r], b_length[r], num_masked[r],
                   masked_positions[r], masked_tokens[r], cls_id, sep_id, input_ids, original_ids)
    payloads[0] = _packed_size(input_ids, max_seq_length)
    payloads[3] = _packed_size(masked_positions[r], max_predictions)
    payloads[4] = _packed_size(original_ids, max_predictions)
    features = _features_size(key_lengths, payloads)
    sizes[r] = 1 + _varint_size(features) + features
    total += sizes[r] + (16 if framed else 0)
    ends[r] = total

  # Pass 2: the bytes.
  buffer = np.empty(total, np.uint8)
  pos = 0
  for r in range(count):
    n = num_masked[r]
    num_tokens = fill_instance(tokens, a_start[r], a_length[r], b_start[r], b_length[r], n,
                                masked_positions[r], masked_tokens[r], cls_id, sep_id, input_ids,
                                original_ids)
    payloads[0] = _packed_size(input_ids, max_seq_length)
    payloads[3] = _packed_size(masked_positions[r], max_predictions)
    payloads[4] = _packed_size(original_ids, max_predictions)
    if framed:
      length = sizes[r]
      for k in range(8):
        buffer[pos + k] = np.uint8((length >> (8 * k)) & 0xFF)
      pos = _put_uint32(buffer, pos + 8, masked_crc(crc_table, buffer, pos, pos + 8))
    data_begin = pos
    buffer[pos] = 0x0A  # Example.features
    pos = _put_varint(buffer, pos + 1, _features_size(key_lengths, payloads))
    key_offset = 0
    for f in range(7):
      key = keys[key_offset:key_offset + key_lengths[f]]
      key_offset += key_lengths[f]
      pos = _put_entry_header(buffer, pos, key, payloads[f], 2 if f == 5 else 3)
      if f == 0:    # input_ids
        for k in range(max_seq_length):
          pos = _put_varint(buffer, pos, input_ids[k])
      elif f == 1:  # input_mask
        for k in range(max_seq_length):
          buffer[pos + k] = 1 if k < num_tokens else 0
        pos += max_seq_length
      elif f == 2:  # segment_ids
        for k in range(max_seq_length):
          buffer[pos + k] = 1 if a_length[r] + 2 <= k < num_tokens else 0
        pos += max_seq_length
      elif f == 3:  # masked_lm_positions
        for k in range(max_predictions):
          pos = _put_varint(buffer, pos, masked_positions[r, k] if k < n else 0)
      elif f == 4:  # masked_lm_ids
        for k in range(max_predictions):
          pos = _put_varint(buffer, pos, original_ids[k])
      elif f == 5:  # masked_lm_weights: float32 1.0 for real predictions
        for k in range(max_predictions):
          pos = _put_uint32(buffer, pos, np.uint32(0x3F800000) if k < n else np.uint32(0))
      else:         # next_sentence_labels
        buffer[pos] = np.uint8(is_random_next[r])
        pos += 1
    if framed:
      pos = _put_uint32(buffer, pos, masked_crc(crc_table, buffer, data_begin, pos))
  return buffer, ends


KEY_BYTES = np.concatenate(_KEYS)
KEY_LENGTHS = np.array([len(k) for k in _KEYS], dtype=np.int64)
