"""Exports a fine-tuned tagger as a SavedModel: raw text in, entity spans out.

Everything runs in the graph: the text is cut into words (at whitespace, and around every
punctuation character, as BERT's basic tokenizer cuts words), each word is WordPiece-tokenized
with the training tokenizer, the sub-tokens go through the model in windows of
`max_seq_length - 2` (texts longer than one window are cut into consecutive windows), each
word takes the tag predicted at its first sub-token, and entities are read from the tags with
conlleval's rules (see `ner_metrics`):

    import tensorflow_text  # registers the WordPiece op
    loaded = tf.saved_model.load(export_dir)
    out = loaded.signatures["serving_default"](text=tf.constant(["Obama visited Paris ."]))
    out["num_entities"]   # int32  [batch]
    out["entity_start"]   # int32  [batch, max entities] character offsets (-1 past num_entities)
    out["entity_end"]     # int32  [batch, max entities] (exclusive)
    out["entity_type"]    # string [batch, max entities] ("" past num_entities)
    out["entity_text"]    # string [batch, max entities], text[start:end]
    out["word_start"], out["word_end"], out["word_tag"]   # the words and their BIO tags

Offsets count Unicode characters (Python `str` indices). `assets.extra/labels.json` records the
labels and options; `spans_from_outputs` turns one row of the outputs into Python dicts.
"""

import tensorflow as tf

from bert_tf.finetuning.export import SERVING_SIGNATURE, float32_copy, save_serving_module
from bert_tf.finetuning.ner_metrics import split_tag

# Punctuation as BERT's basic tokenizer has it: the ASCII non-alphanumeric printable characters
# and every Unicode punctuation character; each becomes a word of its own.
_PUNCTUATION = r"[!-/:-@\[-`{-~]|\p{P}"
_SPLIT = r"\s+|" + _PUNCTUATION


def _tag_tables(labels):
  """Per label id: the entity type id (0 = O) and whether it is a B- tag; the type names."""
  types, type_ids, begins = [""], [], []
  for label in labels:
    prefix, kind = split_tag(label)
    if kind and kind not in types:
      types.append(kind)
    type_ids.append(types.index(kind))
    begins.append(prefix == "B")
  return type_ids, begins, types


class TaggerServingModule(tf.Module):
  """Raw strings in, words with tags and entity spans out (see the module docstring).

  Args:
    model: a float32 `tagging.BertTokenClassifier`.
    tokenizer: a `bert_tf.text.tokenization.BertTokenizerLayer` (the training vocab and casing).
    labels: tag strings in id order (BIO).
    max_seq_length: window length, [CLS] and [SEP] included.
    cls_id, sep_id, unk_id: ids of [CLS], [SEP] and [UNK].
  """

  def __init__(self, model, tokenizer, labels, max_seq_length, cls_id, sep_id, unk_id):
    super().__init__(name="bert_tagger_serving")
    self.model = model
    self.tokenizer = tokenizer
    self._width = int(max_seq_length) - 2
    self._cls, self._sep, self._unk = int(cls_id), int(sep_id), int(unk_id)
    type_ids, begins, types = _tag_tables(labels)
    self._labels = tf.constant(list(labels), tf.string)
    self._type_ids = tf.constant(type_ids, tf.int32)
    self._begins = tf.constant(begins, tf.bool)
    self._types = tf.constant(types, tf.string)
    self.serve = tf.function(self._serve,
                             input_signature=[tf.TensorSpec([None], tf.string, name="text")])

  def _words(self, text):
    """Words and their byte offsets, RaggedTensors [batch, (words)]."""
    import tensorflow_text as tf_text
    return tf_text.regex_split_with_offsets(text, _SPLIT, _PUNCTUATION)

  def _serve(self, text):
    words, starts, ends = self._words(text)                   # [batch, (words)]
    flat_words = words.flat_values                            # [W]
    pieces = tf.cast(self.tokenizer(flat_words), tf.int32)    # [W, (sub-tokens)]
    # A word that tokenizes to nothing (control characters only) is one [UNK], as in training.
    empty = pieces.row_lengths() == 0                         # [W]
    unk = tf.ragged.boolean_mask(tf.fill([tf.size(empty), 1], self._unk), empty[:, None])
    pieces = tf.concat([pieces, unk], axis=1)                 # [W, (>= 1)]
    first = pieces.row_splits[:-1]                            # [W] first sub-token, flat index
    # Sub-tokens of each text, then consecutive windows of `width` sub-tokens.
    text_splits = tf.gather(pieces.row_splits, words.row_splits)            # [batch + 1]
    text_pieces = tf.RaggedTensor.from_row_splits(pieces.flat_values, text_splits)
    text_lengths = text_pieces.row_lengths()                                # [batch]
    windows_per_text = (text_lengths + self._width - 1) // self._width      # [batch]
    window_offsets = tf.concat([[0], tf.cumsum(windows_per_text)], 0)      # [batch + 1]
    position = tf.ragged.range(text_lengths).flat_values                   # [P] index in text
    text_of_piece = text_pieces.value_rowids()                             # [P]
    window_of_piece = tf.gather(window_offsets, text_of_piece) + position // self._width
    windows = tf.RaggedTensor.from_value_rowids(
        text_pieces.flat_values, window_of_piece, nrows=window_offsets[-1])  # [windows, (<=w)]
    n = windows.nrows()
    cls = tf.fill([n, 1], self._cls)
    sep = tf.fill([n, 1], self._sep)
    ids = tf.concat([cls, windows, sep], axis=1)
    input_ids = ids.to_tensor(0)                                            # [windows, S]
    features = {"input_ids": input_ids,
                "input_mask": tf.ones_like(ids).to_tensor(0),
                "segment_ids": tf.zeros_like(input_ids)}
    logits = self.model(features, training=False)                          # [windows, S, K]
    # Each word's tag is the argmax at its first sub-token.
    word_window = tf.gather(window_of_piece, first)
    word_column = tf.gather(position, first) % self._width + 1
    word_logits = tf.gather_nd(logits, tf.stack([word_window, word_column], axis=1))
    tag_ids = tf.argmax(word_logits, axis=-1, output_type=tf.int32)         # [W]
    return self._entities(text, words, starts, ends, tag_ids)

  def _entities(self, text, words, starts, ends, tag_ids):
    """Entity spans of the words' tags, with conlleval's chunk rules, padded per text."""
    kind = tf.gather(self._type_ids, tag_ids)                 # [W] 0 = O
    begin = tf.gather(self._begins, tag_ids)                  # [W]
    row = words.value_rowids()                                # [W] text of each word
    first_in_text = tf.concat([[True], row[1:] != row[:-1]], 0)
    last_in_text = tf.concat([row[1:] != row[:-1], [True]], 0)
    prev_kind = tf.where(first_in_text, 0, tf.concat([[0], kind[:-1]], 0))
    is_start = (kind > 0) & (begin | (prev_kind != kind))
    next_kind = tf.concat([kind[1:], [0]], 0)
    next_start = tf.concat([is_start[1:], [False]], 0)
    is_end = (kind > 0) & (last_in_text | (next_kind != kind) | next_start)
    start_word = tf.where(is_start)[:, 0]                     # [E]
    end_word = tf.where(is_end)[:, 0]                         # [E], same order
    byte_start = tf.gather(starts.flat_values, start_word)
    byte_end = tf.gather(ends.flat_values, end_word)
    entity_row = tf.gather(row, start_word)
    entity_text_in = tf.gather(text, entity_row)
    char_start = tf.strings.length(tf.strings.substr(entity_text_in, tf.zeros_like(byte_start), byte_start), "UTF8_CHAR")
    char_end = char_start + tf.strings.length(
        tf.strings.substr(entity_text_in, byte_start, byte_end - byte_start), "UTF8_CHAR")
    batch = tf.shape(text, out_type=tf.int64)[0]

    def per_text(values, default):
      return tf.RaggedTensor.from_value_rowids(values, entity_row, nrows=batch).to_tensor(default)

    word_row_text = tf.gather(text, row)
    word_char_start = tf.strings.length(
        tf.strings.substr(word_row_text, tf.zeros_like(starts.flat_values),
                          starts.flat_values), "UTF8_CHAR")
    word_char_end = word_char_start + tf.strings.length(
        tf.strings.substr(word_row_text, starts.flat_values,
                          ends.flat_values - starts.flat_values), "UTF8_CHAR")

    def per_word(values, default):
      return words.with_flat_values(values).to_tensor(default)

    return {
        "num_entities": tf.cast(tf.math.bincount(tf.cast(entity_row, tf.int32),
                                                 minlength=tf.cast(batch, tf.int32),
                                                 maxlength=tf.cast(batch, tf.int32)), tf.int32),
        "entity_start": per_text(tf.cast(char_start, tf.int32), -1),
        "entity_end": per_text(tf.cast(char_end, tf.int32), -1),
        "entity_type": per_text(tf.gather(self._types, tf.gather(kind, start_word)), ""),
        "entity_text": per_text(tf.strings.substr(entity_text_in, byte_start,
                                                  byte_end - byte_start), ""),
        "word_start": per_word(tf.cast(word_char_start, tf.int32), -1),
        "word_end": per_word(tf.cast(word_char_end, tf.int32), -1),
        "word_tag": per_word(tf.gather(self._labels, tag_ids), ""),
    }


def spans_from_outputs(outputs, index=0):
  """The entities of text `index` of a serving call's outputs: list of dicts (start, end, type,
  text), offsets in characters."""
  n = int(outputs["num_entities"][index])
  return [{"start": int(outputs["entity_start"][index][i]),
           "end": int(outputs["entity_end"][index][i]),
           "type": outputs["entity_type"][index][i].numpy().decode("utf-8"),
           "text": outputs["entity_text"][index][i].numpy().decode("utf-8")} for i in range(n)]


def export_tagger(export_dir, model, vocab_file, do_lower_case, labels, max_seq_length,
                  metadata=None):
  """Writes the SavedModel to `export_dir` (replacing what is there only once it is complete).

  Args:
    export_dir: destination folder.
    model: the trained `tagging.BertTokenClassifier` (any precision or strategy).
    vocab_file, do_lower_case: the training tokenizer's.
    labels: BIO tags in id order.
    max_seq_length: the window length used in training.
    metadata: extra JSON-serialisable facts for assets.extra/labels.json.
  """
  from bert_tf.text.tokenization import BertTokenizerLayer, load_vocab
  vocab = load_vocab(vocab_file)
  tokenizer = BertTokenizerLayer(vocab_file, do_lower_case=do_lower_case)
  module = TaggerServingModule(float32_copy(model), tokenizer, labels, max_seq_length,
                               vocab["[CLS]"], vocab["[SEP]"], vocab["[UNK]"])
  info = dict(metadata or {}, labels=list(labels), max_seq_length=int(max_seq_length),
              do_lower_case=bool(do_lower_case), signature=SERVING_SIGNATURE, inputs=["text"],
              outputs=sorted(module.serve.get_concrete_function().structured_outputs))
  return save_serving_module(export_dir, module, info)
