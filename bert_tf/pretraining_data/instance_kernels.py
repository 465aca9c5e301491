"""The numba loops of `instances`: instances and their masks, in the original's order.

The C extension `_kernels.c` has the same loops and runs by default; these are its fallback where
it could not be built, and the reference the tests compare it with (see `kernels`). They live
apart from `instances` so that importing that module (the options, the documents, the
tokenized-text layout) does not load numba.

Every random choice is drawn from the `pyrandom` state passed in (with `pyrandom_jit`), in
google-research/bert's order. Variable names follow the original's where one exists.
"""

import numba
import numpy as np

from bert_tf.pretraining_data import pyrandom_jit


@numba.njit(cache=True)
def _python_round(x):
  """Python 3 `round(x)` for a non-negative float: ties go to the even integer."""
  whole = np.floor(x)
  fraction = x - whole
  if fraction > 0.5 or (fraction == 0.5 and whole % 2.0 == 1.0):
    whole += 1.0
  return np.int64(whole)


@numba.njit(cache=True)
def _token_at(tokens, position, a_start, a_length, b_start):
  """Token id at `position` of `[CLS] A [SEP] B [SEP]`, for positions of A or B only."""
  if position <= a_length:
    return tokens[a_start + position - 1]
  return tokens[b_start + position - a_length - 2]


@numba.njit(cache=True)
def _mask_instance(state, tokens, a_start, a_length, b_start, b_length, max_predictions, masked_lm_prob,
                   whole_word, is_subword, random_word_ids, mask_id, cand_positions, group_begin,
                   group_end, out_positions, out_tokens):
  """Chooses masked positions of one instance; fills out_* (sorted by position), returns their count."""
  num_tokens = a_length + b_length + 3
  # Candidates: every position except [CLS] and the two [SEP]; with whole-word masking a `##`
  # piece joins the group of the candidate before it (even across the middle [SEP]).
  num_candidates = 0
  num_groups = 0
  for position in range(1, num_tokens - 1):
    if position == a_length + 1:
      continue
    cand_positions[num_candidates] = position
    token = tokens[a_start + position - 1] if position <= a_length else tokens[b_start + position - a_length - 2]
    if whole_word and num_groups >= 1 and token < is_subword.shape[0] and is_subword[token]:
      group_end[num_groups - 1] = num_candidates + 1
    else:
      group_begin[num_groups] = num_candidates
      group_end[num_groups] = num_candidates + 1
      num_groups += 1
    num_candidates += 1

  order = np.arange(num_groups)
  pyrandom_jit.shuffle(state, order)

  num_to_predict = min(max_predictions, max(1, _python_round(num_tokens * masked_lm_prob)))
  num_masked = 0
  for k in range(num_groups):
    if num_masked >= num_to_predict:
      break
    group = order[k]
    if num_masked + group_end[group] - group_begin[group] > num_to_predict:
      continue
    for c in range(group_begin[group], group_end[group]):
      position = cand_positions[c]
      if pyrandom_jit.random_float(state) < 0.8:
        replacement = mask_id
      elif pyrandom_jit.random_float(state) < 0.5:
        replacement = _token_at(tokens, position, a_start, a_length, b_start)
      else:
        replacement = random_word_ids[pyrandom_jit.randbelow(state, random_word_ids.shape[0])]
      out_positions[num_masked] = position
      out_tokens[num_masked] = replacement
      num_masked += 1

  # Sort by position (insertion sort; at most max_predictions entries).
  for i in range(1, num_masked):
    position = out_positions[i]
    replacement = out_tokens[i]
    j = i - 1
    while j >= 0 and out_positions[j] > position:
      out_positions[j + 1] = out_positions[j]
      out_tokens[j + 1] = out_tokens[j]
      j -= 1
    out_positions[j + 1] = position
    out_tokens[j + 1] = replacement
  return num_masked


@numba.njit(cache=True)
def _allocate(capacity, max_predictions):
  """Instance arrays for `capacity` instances, in `ShardInstances` field order."""
  return (np.empty(capacity, np.int64), np.empty(capacity, np.int32),   # a_start, a_length
          np.empty(capacity, np.int64), np.empty(capacity, np.int32),   # b_start, b_length
          np.empty(capacity, np.uint8), np.empty(capacity, np.int32),   # is_random_next, num_masked
          np.zeros((capacity, max_predictions), np.int32),              # masked_positions
          np.zeros((capacity, max_predictions), np.int32))              # masked_tokens


@numba.njit(cache=True)
def _grow(a_start, a_length, b_start, b_length, is_random_next, num_masked, masked_positions, masked_tokens):
  """Doubles the instance arrays' capacity, keeping their contents."""
  capacity = a_start.shape[0]
  bigger = _allocate(2 * capacity, masked_positions.shape[1])
  bigger[0][:capacity] = a_start
  bigger[1][:capacity] = a_length
  bigger[2][:capacity] = b_start
  bigger[3][:capacity] = b_length
  bigger[4][:capacity] = is_random_next
  bigger[5][:capacity] = num_masked
  bigger[6][:capacity] = masked_positions
  bigger[7][:capacity] = masked_tokens
  return bigger


@numba.njit(cache=True)
def create_instances(tokens, sentence_starts, document_starts, state, max_seq_length, max_predictions,
                     masked_lm_prob, short_seq_prob, dupe_factor, whole_word, is_subword, random_word_ids,
                     mask_id):
  """All instances of a shard in output order (the original's create_training_instances)."""
  num_documents = document_starts.shape[0] - 1
  # rng.shuffle(all_documents): shuffled slot d holds document doc_order[d].
  doc_order = pyrandom_jit.permutation(state, num_documents)
  max_num_tokens = max_seq_length - 3

  # A first guess of the instance count; the arrays double when it is exceeded.
  capacity = max(16, (tokens.shape[0] // max(1, max_num_tokens) + num_documents) * dupe_factor)
  (a_start, a_length, b_start, b_length, is_random_next, num_masked, masked_positions,
   masked_tokens) = _allocate(capacity, max_predictions)
  count = 0

  cand_positions = np.empty(max_seq_length, np.int64)
  group_begin = np.empty(max_seq_length, np.int64)
  group_end = np.empty(max_seq_length, np.int64)

  for _ in range(dupe_factor):
    for document_index in range(num_documents):
      doc = doc_order[document_index]
      first = document_starts[doc]
      num_sentences = document_starts[doc + 1] - first

      target_seq_length = max_num_tokens
      if pyrandom_jit.random_float(state) < short_seq_prob:
        target_seq_length = pyrandom_jit.randint(state, 2, max_num_tokens)

      chunk_begin = 0  # first sentence (within the document) of the current chunk
      current_length = 0
      i = 0
      while i < num_sentences:
        sentence = first + i
        current_length += sentence_starts[sentence + 1] - sentence_starts[sentence]
        if i == num_sentences - 1 or current_length >= target_seq_length:
          chunk_size = i - chunk_begin + 1
          a_end = 1
          if chunk_size >= 2:
            a_end = pyrandom_jit.randint(state, 1, chunk_size - 1)
          span_a_start = sentence_starts[first + chunk_begin]
          span_a_length = sentence_starts[first + chunk_begin + a_end] - span_a_start

          if chunk_size == 1 or pyrandom_jit.random_float(state) < 0.5:
            random_next = 1
            target_b_length = target_seq_length - span_a_length
            random_document_index = 0
            for _attempt in range(10):
              random_document_index = pyrandom_jit.randint(state, 0, num_documents - 1)
              if random_document_index != document_index:
                break
            random_doc = doc_order[random_document_index]
            random_first = document_starts[random_doc]
            random_count = document_starts[random_doc + 1] - random_first
            random_start = pyrandom_jit.randint(state, 0, random_count - 1)
            span_b_start = sentence_starts[random_first + random_start]
            span_b_length = 0
            for j in range(random_start, random_count):
              span_b_length = sentence_starts[random_first + j + 1] - span_b_start
              if span_b_length >= target_b_length:
                break
            # The chunk's segments after A go back to the document for the next chunk.
            i -= chunk_size - a_end
          else:
            random_next = 0
            span_b_start = sentence_starts[first + chunk_begin + a_end]
            span_b_length = sentence_starts[first + i + 1] - span_b_start

          # truncate_seq_pair: drop a token from a random end of the longer side (B on ties).
          while span_a_length + span_b_length > max_num_tokens:
            front = pyrandom_jit.random_float(state) < 0.5
            if span_a_length > span_b_length:
              if front:
                span_a_start += 1
              span_a_length -= 1
            else:
              if front:
                span_b_start += 1
              span_b_length -= 1

          if count == a_start.shape[0]:
            (a_start, a_length, b_start, b_length, is_random_next, num_masked, masked_positions,
             masked_tokens) = _grow(a_start, a_length, b_start, b_length, is_random_next, num_masked,
                                    masked_positions, masked_tokens)
          a_start[count] = span_a_start
          a_length[count] = span_a_length
          b_start[count] = span_b_start
          b_length[count] = span_b_length
          is_random_next[count] = random_next
          num_masked[count] = _mask_instance(
              state, tokens, span_a_start, span_a_length, span_b_start, span_b_length, max_predictions,
              masked_lm_prob, whole_word, is_subword, random_word_ids, mask_id, cand_positions,
              group_begin, group_end, masked_positions[count], masked_tokens[count])
          count += 1

          chunk_begin = i + 1
          current_length = 0
        i += 1

  # rng.shuffle(instances): output slot k holds instance order[k].
  order = pyrandom_jit.permutation(state, count)
  return (a_start[order], a_length[order], b_start[order], b_length[order], is_random_next[order],
          num_masked[order], masked_positions[order], masked_tokens[order])
