/* The compiled loops of create_pretraining_data as a C extension, built when the package is installed.

   The same algorithms as the numba kernels in instance_kernels.py, record_kernels.py and pyrandom.py
   (which stay as the fallback where this extension could not be built, and as the reference the
   tests compare it with): every random choice is drawn from a uint32[625] Mersenne Twister state in
   `random.Random`'s layout, in google-research/bert's order, so the records are byte for byte those
   of the numba kernels. Built at install time, it needs no compiling when a fresh environment runs
   it first (numba's JIT took ~17 s there) and no numba import (~0.5 s).

   Arrays come in through the buffer protocol; the `kernels` module checks their dtypes and shapes
   and allocates the outputs. Only the limited C API of Python 3.11 is used (one abi3 wheel serves
   every later Python). */

#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* ---- Python's random.Random (MT19937) ---------------------------------------------------------- */

#define MT_N 624
#define MT_M 397

static void mt_twist(uint32_t *state) {
  for (int i = 0; i < MT_N; i++) {
    uint32_t y = (state[i] & 0x80000000u) | (state[(i + 1) % MT_N] & 0x7FFFFFFFu);
    uint32_t value = state[(i + MT_M) % MT_N] ^ (y >> 1);
    if (y & 1u) value ^= 0x9908B0DFu;
    state[i] = value;
  }
  state[MT_N] = 0;
}

static uint32_t mt_next_word(uint32_t *state) {
  if (state[MT_N] >= MT_N) mt_twist(state);
  uint32_t y = state[state[MT_N]];
  state[MT_N] += 1;
  y ^= y >> 11;
  y ^= (y << 7) & 0x9D2C5680u;
  y ^= (y << 15) & 0xEFC60000u;
  y ^= y >> 18;
  return y;
}

/* getrandbits(k), 1 <= k <= 64 */
static int64_t mt_getrandbits(uint32_t *state, int k) {
  if (k <= 32) return (int64_t)(mt_next_word(state) >> (32 - k));
  uint64_t low = mt_next_word(state);
  uint64_t high = mt_next_word(state) >> (64 - k);
  return (int64_t)(low | (high << 32));
}

static int bit_length(int64_t n) {
  int k = 0;
  while (n > 0) {
    n >>= 1;
    k++;
  }
  return k;
}

/* random._randbelow(n) for n >= 1 (rejection sampling on n.bit_length() bits) */
static int64_t mt_randbelow(uint32_t *state, int64_t n) {
  int k = bit_length(n);
  int64_t r = mt_getrandbits(state, k);
  while (r >= n) r = mt_getrandbits(state, k);
  return r;
}

static int64_t mt_randint(uint32_t *state, int64_t low, int64_t high) {
  return low + mt_randbelow(state, high - low + 1);
}

/* random.random(): 53 bits from two words (every step exact in double precision) */
static double mt_random(uint32_t *state) {
  uint32_t a = mt_next_word(state) >> 5;
  uint32_t b = mt_next_word(state) >> 6;
  return ((double)a * 67108864.0 + (double)b) * (1.0 / 9007199254740992.0);
}

static void mt_shuffle(uint32_t *state, int64_t *values, int64_t n) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = mt_randbelow(state, i + 1);
    int64_t tmp = values[i];
    values[i] = values[j];
    values[j] = tmp;
  }
}

static void mt_permutation(uint32_t *state, int64_t *order, int64_t n) {
  for (int64_t i = 0; i < n; i++) order[i] = i;
  mt_shuffle(state, order, n);
}

/* ---- instances ------------------------------------------------------------------------------- */

/* Python 3's round(x) for x >= 0: ties to the even integer. */
static int64_t python_round(double x) {
  double whole = floor(x);
  double fraction = x - whole;
  if (fraction > 0.5 || (fraction == 0.5 && fmod(whole, 2.0) == 1.0)) whole += 1.0;
  return (int64_t)whole;
}

typedef struct {
  const int32_t *tokens;
  const uint8_t *is_subword;
  int64_t is_subword_size;
  const int32_t *random_word_ids;
  int64_t num_random_words;
  int64_t mask_id;
  int64_t max_predictions;
  double masked_lm_prob;
  int whole_word;
  int64_t *cand_positions, *group_begin, *group_end, *group_order; /* scratch, [max_seq_length] */
} MaskContext;

static int64_t token_at(const int32_t *tokens, int64_t position, int64_t a_start, int64_t a_length,
                        int64_t b_start) {
  if (position <= a_length) return tokens[a_start + position - 1];
  return tokens[b_start + position - a_length - 2];
}

/* Chooses the masked positions of one instance into out_* (sorted by position); returns their count. */
static int64_t mask_instance(MaskContext *c, uint32_t *state, int64_t a_start, int64_t a_length,
                             int64_t b_start, int64_t b_length, int32_t *out_positions,
                             int32_t *out_tokens) {
  int64_t num_tokens = a_length + b_length + 3;
  int64_t num_candidates = 0, num_groups = 0;
  for (int64_t position = 1; position < num_tokens - 1; position++) {
    if (position == a_length + 1) continue;
    c->cand_positions[num_candidates] = position;
    int64_t token = token_at(c->tokens, position, a_start, a_length, b_start);
    if (c->whole_word && num_groups >= 1 && token < c->is_subword_size && c->is_subword[token]) {
      c->group_end[num_groups - 1] = num_candidates + 1;
    } else {
      c->group_begin[num_groups] = num_candidates;
      c->group_end[num_groups] = num_candidates + 1;
      num_groups++;
    }
    num_candidates++;
  }
  for (int64_t g = 0; g < num_groups; g++) c->group_order[g] = g;
  mt_shuffle(state, c->group_order, num_groups);

  volatile double expected = (double)num_tokens * c->masked_lm_prob; /* rounded, never fused */
  int64_t num_to_predict = python_round(expected);
  if (num_to_predict < 1) num_to_predict = 1;
  if (num_to_predict > c->max_predictions) num_to_predict = c->max_predictions;
  int64_t num_masked = 0;
  for (int64_t k = 0; k < num_groups; k++) {
    if (num_masked >= num_to_predict) break;
    int64_t group = c->group_order[k];
    if (num_masked + c->group_end[group] - c->group_begin[group] > num_to_predict) continue;
    for (int64_t cand = c->group_begin[group]; cand < c->group_end[group]; cand++) {
      int64_t position = c->cand_positions[cand];
      int64_t replacement;
      if (mt_random(state) < 0.8) {
        replacement = c->mask_id;
      } else if (mt_random(state) < 0.5) {
        replacement = token_at(c->tokens, position, a_start, a_length, b_start);
      } else {
        replacement = c->random_word_ids[mt_randbelow(state, c->num_random_words)];
      }
      out_positions[num_masked] = (int32_t)position;
      out_tokens[num_masked] = (int32_t)replacement;
      num_masked++;
    }
  }
  for (int64_t i = 1; i < num_masked; i++) { /* insertion sort by position */
    int32_t position = out_positions[i], replacement = out_tokens[i];
    int64_t j = i - 1;
    while (j >= 0 && out_positions[j] > position) {
      out_positions[j + 1] = out_positions[j];
      out_tokens[j + 1] = out_tokens[j];
      j--;
    }
    out_positions[j + 1] = position;
    out_tokens[j + 1] = replacement;
  }
  return num_masked;
}

/* The instance fields, in `ShardInstances` order: start and length of A and B, is_random_next,
   num_masked, then masked_positions and masked_tokens ([capacity, max_predictions] each). */
#define NUM_FIELDS 8
static const int field_itemsize[NUM_FIELDS] = {8, 4, 8, 4, 1, 4, 4, 4};

typedef struct {
  char *field[NUM_FIELDS];
  int64_t capacity, max_predictions;
} InstanceArrays;

static Py_ssize_t field_bytes(const InstanceArrays *a, int f, int64_t count) {
  return (Py_ssize_t)(field_itemsize[f] * count * (f >= 6 ? a->max_predictions : 1));
}

static void free_instances(InstanceArrays *a) {
  for (int f = 0; f < NUM_FIELDS; f++) {
    free(a->field[f]);
    a->field[f] = NULL;
  }
}

/* Room for `capacity` instances, keeping the contents; 0 when out of memory. */
static int grow_instances(InstanceArrays *a, int64_t capacity) {
  for (int f = 0; f < NUM_FIELDS; f++) {
    char *bigger = realloc(a->field[f], field_bytes(a, f, capacity));
    if (bigger == NULL) return 0;
    a->field[f] = bigger;
  }
  a->capacity = capacity;
  return 1;
}

/* All instances of a shard (the original's create_training_instances) in creation order, and in
   `*order` the output order (rng.shuffle(instances)). Returns their count, or -1 out of memory. */
static int64_t build_instances(const int64_t *sentence_starts, const int64_t *document_starts,
                               int64_t num_documents, uint32_t *state, int64_t max_seq_length,
                               double short_seq_prob, int64_t dupe_factor, MaskContext *mask,
                               InstanceArrays *out, int64_t **order) {
  int64_t max_num_tokens = max_seq_length - 3;
  int64_t count = 0;
  int64_t *doc_order = malloc(sizeof(int64_t) * (num_documents > 0 ? num_documents : 1));
  if (doc_order == NULL) return -1;
  mt_permutation(state, doc_order, num_documents); /* rng.shuffle(all_documents) */

  for (int64_t dupe = 0; dupe < dupe_factor; dupe++) {
    for (int64_t document_index = 0; document_index < num_documents; document_index++) {
      int64_t doc = doc_order[document_index];
      int64_t first = document_starts[doc];
      int64_t num_sentences = document_starts[doc + 1] - first;

      int64_t target_seq_length = max_num_tokens;
      if (mt_random(state) < short_seq_prob) target_seq_length = mt_randint(state, 2, max_num_tokens);

      int64_t chunk_begin = 0, current_length = 0;
      for (int64_t i = 0; i < num_sentences; i++) {
        int64_t sentence = first + i;
        current_length += sentence_starts[sentence + 1] - sentence_starts[sentence];
        if (!(i == num_sentences - 1 || current_length >= target_seq_length)) continue;
        int64_t chunk_size = i - chunk_begin + 1;
        int64_t a_end = 1;
        if (chunk_size >= 2) a_end = mt_randint(state, 1, chunk_size - 1);
        int64_t span_a_start = sentence_starts[first + chunk_begin];
        int64_t span_a_length = sentence_starts[first + chunk_begin + a_end] - span_a_start;
        int64_t span_b_start, span_b_length;
        int random_next;

        if (chunk_size == 1 || mt_random(state) < 0.5) {
          random_next = 1;
          int64_t target_b_length = target_seq_length - span_a_length;
          int64_t random_document_index = 0;
          for (int attempt = 0; attempt < 10; attempt++) {
            random_document_index = mt_randint(state, 0, num_documents - 1);
            if (random_document_index != document_index) break;
          }
          int64_t random_doc = doc_order[random_document_index];
          int64_t random_first = document_starts[random_doc];
          int64_t random_count = document_starts[random_doc + 1] - random_first;
          int64_t random_start = mt_randint(state, 0, random_count - 1);
          span_b_start = sentence_starts[random_first + random_start];
          span_b_length = 0;
          for (int64_t j = random_start; j < random_count; j++) {
            span_b_length = sentence_starts[random_first + j + 1] - span_b_start;
            if (span_b_length >= target_b_length) break;
          }
          i -= chunk_size - a_end; /* the chunk's sentences after A go back to the document */
        } else {
          random_next = 0;
          span_b_start = sentence_starts[first + chunk_begin + a_end];
          span_b_length = sentence_starts[first + i + 1] - span_b_start;
        }

        /* truncate_seq_pair: drop a token from a random end of the longer side (B on ties) */
        while (span_a_length + span_b_length > max_num_tokens) {
          int front = mt_random(state) < 0.5;
          if (span_a_length > span_b_length) {
            if (front) span_a_start++;
            span_a_length--;
          } else {
            if (front) span_b_start++;
            span_b_length--;
          }
        }

        if (count == out->capacity && !grow_instances(out, 2 * out->capacity)) {
          free(doc_order);
          return -1;
        }
        int64_t m = count * mask->max_predictions;
        ((int64_t *)out->field[0])[count] = span_a_start;
        ((int32_t *)out->field[1])[count] = (int32_t)span_a_length;
        ((int64_t *)out->field[2])[count] = span_b_start;
        ((int32_t *)out->field[3])[count] = (int32_t)span_b_length;
        ((uint8_t *)out->field[4])[count] = (uint8_t)random_next;
        memset(out->field[6] + 4 * m, 0, 4 * mask->max_predictions);
        memset(out->field[7] + 4 * m, 0, 4 * mask->max_predictions);
        ((int32_t *)out->field[5])[count] = (int32_t)mask_instance(
            mask, state, span_a_start, span_a_length, span_b_start, span_b_length,
            (int32_t *)out->field[6] + m, (int32_t *)out->field[7] + m);
        count++;
        chunk_begin = i + 1;
        current_length = 0;
      }
    }
  }
  free(doc_order);
  *order = malloc(sizeof(int64_t) * (count > 0 ? count : 1));
  if (*order == NULL) return -1;
  mt_permutation(state, *order, count); /* rng.shuffle(instances): slot k holds instance order[k] */
  return count;
}

/* Checks that a buffer holds `count` items of `itemsize` bytes (count < 0: any whole number). */
static int check_buffer(Py_buffer *b, const char *name, Py_ssize_t itemsize, Py_ssize_t count) {
  if (b->len % itemsize != 0 || (count >= 0 && b->len != itemsize * count)) {
    PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd items of %zd bytes", name, b->len,
                 count, itemsize);
    return 0;
  }
  return 1;
}

/* The fields in output order, each as a bytearray (the caller views them as numpy arrays). */
static PyObject *shuffled_fields(const InstanceArrays *a, const int64_t *order, int64_t count) {
  PyObject *result = PyTuple_New(NUM_FIELDS);
  if (result == NULL) return NULL;
  for (int f = 0; f < NUM_FIELDS; f++) {
    PyObject *bytes = PyByteArray_FromStringAndSize(NULL, field_bytes(a, f, count));
    if (bytes == NULL) {
      Py_DECREF(result);
      return NULL;
    }
    char *to = PyByteArray_AsString(bytes);
    Py_ssize_t row = field_bytes(a, f, 1);
    for (int64_t k = 0; k < count; k++) memcpy(to + k * row, a->field[f] + order[k] * row, row);
    PyTuple_SetItem(result, f, bytes);
  }
  return result;
}

static PyObject *py_create_instances(PyObject *self, PyObject *args) {
  Py_buffer tokens, sentence_starts, document_starts, state, is_subword, random_word_ids;
  Py_ssize_t max_seq_length, max_predictions, dupe_factor, mask_id;
  double masked_lm_prob, short_seq_prob;
  int whole_word;
  if (!PyArg_ParseTuple(args, "y*y*y*w*nnddnpy*y*n", &tokens, &sentence_starts, &document_starts,
                        &state, &max_seq_length, &max_predictions, &masked_lm_prob, &short_seq_prob,
                        &dupe_factor, &whole_word, &is_subword, &random_word_ids, &mask_id))
    return NULL;
  Py_buffer *all[] = {&tokens, &sentence_starts, &document_starts, &state, &is_subword, &random_word_ids};
  PyObject *result = NULL;
  int64_t *scratch = NULL, *order = NULL;
  InstanceArrays out = {{NULL}, 0, max_predictions};
  Py_ssize_t num_documents = document_starts.len / 8 - 1;
  if (!check_buffer(&tokens, "tokens", 4, -1) || !check_buffer(&sentence_starts, "sentence_starts", 8, -1) ||
      !check_buffer(&document_starts, "document_starts", 8, -1) || !check_buffer(&state, "state", 4, 625) ||
      !check_buffer(&random_word_ids, "random_word_ids", 4, -1))
    goto done;
  if (num_documents < 0 || max_seq_length < 5 || max_predictions < 1 || random_word_ids.len == 0) {
    PyErr_SetString(PyExc_ValueError,
                    "create_instances: needs max_seq_length >= 5, max_predictions >= 1 and a vocab");
    goto done;
  }
  scratch = malloc(sizeof(int64_t) * 4 * max_seq_length);
  /* A first guess of the count (the numba kernel's); the arrays double when it is exceeded. */
  int64_t guess = (tokens.len / 4 / (max_seq_length - 3) + num_documents) * dupe_factor;
  if (scratch == NULL || !grow_instances(&out, guess > 16 ? guess : 16)) {
    PyErr_NoMemory();
    goto done;
  }
  MaskContext mask = {tokens.buf, is_subword.buf, is_subword.len, random_word_ids.buf,
                      random_word_ids.len / 4, mask_id, max_predictions, masked_lm_prob, whole_word,
                      scratch, scratch + max_seq_length, scratch + 2 * max_seq_length,
                      scratch + 3 * max_seq_length};
  int64_t count;
  Py_BEGIN_ALLOW_THREADS
  count = build_instances(sentence_starts.buf, document_starts.buf, num_documents, state.buf,
                          max_seq_length, short_seq_prob, dupe_factor, &mask, &out, &order);
  Py_END_ALLOW_THREADS
  if (count < 0)
    PyErr_NoMemory();
  else
    result = shuffled_fields(&out, order, count);
done:
  free(scratch);
  free(order);
  free_instances(&out);
  for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++) PyBuffer_Release(all[k]);
  return result;
}

/* ---- records --------------------------------------------------------------------------------- */

static uint32_t crc_tables[8][256]; /* CRC-32C (Castagnoli), slicing-by-8 */

static void init_crc_tables(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_tables[0][n] = c;
  }
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = crc_tables[0][n];
    for (int t = 1; t < 8; t++) {
      c = crc_tables[0][c & 0xFFu] ^ (c >> 8);
      crc_tables[t][n] = c;
    }
  }
}

static uint32_t crc32c(const uint8_t *data, int64_t length) {
  uint32_t crc = 0xFFFFFFFFu;
  int64_t i = 0;
  for (; i + 8 <= length; i += 8) {
    uint32_t low = crc ^ ((uint32_t)data[i] | ((uint32_t)data[i + 1] << 8) |
                          ((uint32_t)data[i + 2] << 16) | ((uint32_t)data[i + 3] << 24));
    crc = crc_tables[7][low & 0xFFu] ^ crc_tables[6][(low >> 8) & 0xFFu] ^
          crc_tables[5][(low >> 16) & 0xFFu] ^ crc_tables[4][low >> 24] ^ crc_tables[3][data[i + 4]] ^
          crc_tables[2][data[i + 5]] ^ crc_tables[1][data[i + 6]] ^ crc_tables[0][data[i + 7]];
  }
  for (; i < length; i++) crc = crc_tables[0][(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

static uint32_t masked_crc(const uint8_t *data, int64_t length) {
  uint32_t crc = crc32c(data, length);
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

static int64_t varint_size(uint64_t value) {
  int64_t size = 1;
  while (value >= 128) {
    value >>= 7;
    size++;
  }
  return size;
}

static uint8_t *put_varint(uint8_t *p, uint64_t value) {
  while (value >= 128) {
    *p++ = (uint8_t)((value & 127) | 128);
    value >>= 7;
  }
  *p++ = (uint8_t)value;
  return p;
}

static uint8_t *put_uint32(uint8_t *p, uint32_t value) {
  for (int k = 0; k < 4; k++) *p++ = (uint8_t)(value >> (8 * k));
  return p;
}

/* The sizes in a map entry holding one list feature: the packed list, the Feature, the entry. */
static int64_t list_size(int64_t payload) { return 1 + varint_size(payload) + payload; }
static int64_t feature_size(int64_t payload) {
  int64_t list = list_size(payload);
  return 1 + varint_size(list) + list;
}
static int64_t entry_size(int64_t key_length, int64_t payload) {
  int64_t feature = feature_size(payload);
  return 1 + varint_size(key_length) + key_length + 1 + varint_size(feature) + feature;
}

/* The entry's tag and length, its key, and the headers down to the packed values. */
static uint8_t *put_entry_header(uint8_t *p, const uint8_t *key, int64_t key_length, int64_t payload,
                                 int feature_field) {
  *p++ = 0x0A; /* Features.feature */
  p = put_varint(p, entry_size(key_length, payload));
  *p++ = 0x0A; /* MapEntry.key */
  p = put_varint(p, key_length);
  memcpy(p, key, key_length);
  p += key_length;
  *p++ = 0x12; /* MapEntry.value */
  p = put_varint(p, feature_size(payload));
  *p++ = (uint8_t)(feature_field << 3 | 2); /* Feature.float_list (2) / int64_list (3) */
  p = put_varint(p, list_size(payload));
  *p++ = 0x0A; /* packed values */
  return put_varint(p, payload);
}

typedef struct {
  const int32_t *tokens;
  const int64_t *a_start, *b_start;
  const int32_t *a_length, *b_length, *num_masked, *masked_positions, *masked_tokens;
  const uint8_t *is_random_next;
  int64_t count, max_predictions, max_seq_length, cls_id, sep_id;
  const uint8_t *keys;
  const int64_t *key_lengths; /* [7], the schema's feature order */
  int64_t *input_ids, *original_ids; /* scratch */
} RecordContext;

/* Padded, masked input_ids of instance r and the ids it had at the masked positions. */
static int64_t fill_instance(const RecordContext *c, int64_t r) {
  int64_t a_length = c->a_length[r], b_length = c->b_length[r];
  int64_t num_tokens = a_length + b_length + 3;
  int64_t *ids = c->input_ids;
  ids[0] = c->cls_id;
  for (int64_t k = 0; k < a_length; k++) ids[1 + k] = c->tokens[c->a_start[r] + k];
  ids[a_length + 1] = c->sep_id;
  for (int64_t k = 0; k < b_length; k++) ids[a_length + 2 + k] = c->tokens[c->b_start[r] + k];
  ids[num_tokens - 1] = c->sep_id;
  for (int64_t k = num_tokens; k < c->max_seq_length; k++) ids[k] = 0;
  const int32_t *positions = c->masked_positions + r * c->max_predictions;
  const int32_t *replacements = c->masked_tokens + r * c->max_predictions;
  for (int64_t k = 0; k < c->max_predictions; k++) c->original_ids[k] = 0;
  for (int64_t k = 0; k < c->num_masked[r]; k++) {
    c->original_ids[k] = ids[positions[k]];
    ids[positions[k]] = replacements[k];
  }
  return num_tokens;
}

static int64_t packed_size(const int64_t *values, int64_t count) {
  int64_t size = 0;
  for (int64_t k = 0; k < count; k++) size += varint_size((uint64_t)values[k]);
  return size;
}

/* Packed byte sizes of the seven features of instance r (after fill_instance), and the Features size. */
static int64_t features_size(const RecordContext *c, int64_t r, int64_t payloads[7]) {
  const int32_t *positions = c->masked_positions + r * c->max_predictions;
  int64_t n = c->num_masked[r];
  payloads[0] = packed_size(c->input_ids, c->max_seq_length);
  payloads[1] = payloads[2] = c->max_seq_length;
  payloads[3] = 0;
  for (int64_t k = 0; k < c->max_predictions; k++) payloads[3] += varint_size(k < n ? (uint64_t)positions[k] : 0);
  payloads[4] = packed_size(c->original_ids, c->max_predictions);
  payloads[5] = 4 * c->max_predictions;
  payloads[6] = 1;
  int64_t size = 0;
  for (int f = 0; f < 7; f++) {
    int64_t entry = entry_size(c->key_lengths[f], payloads[f]);
    size += 1 + varint_size(entry) + entry;
  }
  return size;
}

static uint8_t *put_record(const RecordContext *c, int64_t r, uint8_t *p) {
  int64_t payloads[7];
  int64_t num_tokens = fill_instance(c, r);
  int64_t n = c->num_masked[r];
  const int32_t *positions = c->masked_positions + r * c->max_predictions;
  *p++ = 0x0A; /* Example.features */
  p = put_varint(p, features_size(c, r, payloads));
  const uint8_t *key = c->keys;
  for (int f = 0; f < 7; f++) {
    p = put_entry_header(p, key, c->key_lengths[f], payloads[f], f == 5 ? 2 : 3);
    key += c->key_lengths[f];
    switch (f) {
      case 0: /* input_ids */
        for (int64_t k = 0; k < c->max_seq_length; k++) p = put_varint(p, c->input_ids[k]);
        break;
      case 1: /* input_mask */
        for (int64_t k = 0; k < c->max_seq_length; k++) *p++ = k < num_tokens;
        break;
      case 2: /* segment_ids */
        for (int64_t k = 0; k < c->max_seq_length; k++) *p++ = c->a_length[r] + 2 <= k && k < num_tokens;
        break;
      case 3: /* masked_lm_positions */
        for (int64_t k = 0; k < c->max_predictions; k++) p = put_varint(p, k < n ? (uint64_t)positions[k] : 0);
        break;
      case 4: /* masked_lm_ids */
        for (int64_t k = 0; k < c->max_predictions; k++) p = put_varint(p, c->original_ids[k]);
        break;
      case 5: /* masked_lm_weights: float32 1.0 for real predictions */
        for (int64_t k = 0; k < c->max_predictions; k++) p = put_uint32(p, k < n ? 0x3F800000u : 0u);
        break;
      default: /* next_sentence_labels */
        *p++ = c->is_random_next[r];
    }
  }
  return p;
}

/* serialize(...): pass 1 fills `ends` and returns the total size when `buffer` is None; pass 2
   writes the records (TFRecord-framed if `framed`) into `buffer`. */
static PyObject *py_serialize(PyObject *self, PyObject *args) {
  Py_buffer tokens, a_start, a_length, b_start, b_length, is_random_next, num_masked, masked_positions,
      masked_tokens, keys, key_lengths, ends;
  Py_ssize_t cls_id, sep_id, max_seq_length, max_predictions;
  int framed;
  PyObject *buffer_object;
  if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*nnnnpy*y*w*O", &tokens, &a_start, &a_length, &b_start,
                        &b_length, &is_random_next, &num_masked, &masked_positions, &masked_tokens,
                        &cls_id, &sep_id, &max_seq_length, &max_predictions, &framed, &keys,
                        &key_lengths, &ends, &buffer_object))
    return NULL;
  Py_buffer *all[] = {&tokens, &a_start, &a_length, &b_start, &b_length, &is_random_next, &num_masked,
                      &masked_positions, &masked_tokens, &keys, &key_lengths, &ends};
  Py_buffer buffer = {0};
  int have_buffer = 0;
  PyObject *result = NULL;
  int64_t *scratch = NULL;
  Py_ssize_t count = a_start.len / 8;
  if (!check_buffer(&tokens, "tokens", 4, -1) || !check_buffer(&a_start, "a_start", 8, count) ||
      !check_buffer(&a_length, "a_length", 4, count) || !check_buffer(&b_start, "b_start", 8, count) ||
      !check_buffer(&b_length, "b_length", 4, count) ||
      !check_buffer(&is_random_next, "is_random_next", 1, count) ||
      !check_buffer(&num_masked, "num_masked", 4, count) ||
      !check_buffer(&masked_positions, "masked_positions", 4, count * max_predictions) ||
      !check_buffer(&masked_tokens, "masked_tokens", 4, count * max_predictions) ||
      !check_buffer(&key_lengths, "key_lengths", 8, 7) || !check_buffer(&ends, "ends", 8, count))
    goto done;
  if (buffer_object != Py_None) {
    if (PyObject_GetBuffer(buffer_object, &buffer, PyBUF_WRITABLE) < 0) goto done;
    have_buffer = 1;
  }
  scratch = malloc(sizeof(int64_t) * (max_seq_length + max_predictions));
  if (scratch == NULL) {
    PyErr_NoMemory();
    goto done;
  }
  RecordContext c = {tokens.buf, a_start.buf, b_start.buf, a_length.buf, b_length.buf, num_masked.buf,
                     masked_positions.buf, masked_tokens.buf, is_random_next.buf, count, max_predictions,
                     max_seq_length, cls_id, sep_id, keys.buf, key_lengths.buf, scratch,
                     scratch + max_seq_length};
  int64_t *end = ends.buf;
  int64_t total = 0;
  int ok = 1;
  Py_BEGIN_ALLOW_THREADS
  if (!have_buffer) {
    int64_t payloads[7];
    for (int64_t r = 0; r < count; r++) {
      fill_instance(&c, r);
      int64_t features = features_size(&c, r, payloads);
      total += 1 + varint_size(features) + features + (framed ? 16 : 0);
      end[r] = total;
    }
  } else if (count > 0 && buffer.len != end[count - 1]) {
    ok = 0;
  } else {
    uint8_t *base = buffer.buf, *p = base;
    for (int64_t r = 0; r < count; r++) {
      if (framed) {
        uint64_t length = end[r] - (p - base) - 16;
        for (int k = 0; k < 8; k++) p[k] = (uint8_t)(length >> (8 * k));
        put_uint32(p + 8, masked_crc(p, 8));
        p += 12;
      }
      uint8_t *data = p;
      p = put_record(&c, r, p);
      if (framed) p = put_uint32(p, masked_crc(data, p - data));
    }
    total = p - base;
  }
  Py_END_ALLOW_THREADS
  if (!ok)
    PyErr_SetString(PyExc_ValueError, "serialize: the buffer does not have the size of pass 1");
  else
    result = PyLong_FromLongLong(total);
done:
  free(scratch);
  if (have_buffer) PyBuffer_Release(&buffer);
  for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++) PyBuffer_Release(all[k]);
  return result;
}

static PyObject *py_masked_crc(PyObject *self, PyObject *args) {
  Py_buffer data;
  if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
  uint32_t crc = masked_crc(data.buf, data.len);
  PyBuffer_Release(&data);
  return PyLong_FromUnsignedLong(crc);
}

static PyMethodDef methods[] = {
    {"create_instances", py_create_instances, METH_VARARGS,
     "All instances of a shard, in output order: a tuple of eight bytearrays (the ShardInstances fields)."},
    {"serialize", py_serialize, METH_VARARGS,
     "Pass 1 (buffer None): record end offsets and total size; pass 2: the record bytes."},
    {"masked_crc", py_masked_crc, METH_VARARGS, "TFRecord's masked CRC-32C of a bytes-like object."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "bert_tf.pretraining_data._kernels",
                                    "create_pretraining_data's loops, compiled at install time.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__kernels(void) {
  init_crc_tables();
  return PyModule_Create(&module);
}
