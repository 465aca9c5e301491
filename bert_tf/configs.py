"""`BertConfig`: the eleven fields of google-research/bert's `bert_config.json` (plus an optional
`layer_norm_eps`), read, validated, written."""

import dataclasses
import json
import os

from bert_tf.utils import io_utils
from bert_tf.errors import UsageError

_ACTIVATIONS = ("gelu", "gelu_exact", "relu", "tanh", "linear")
DEFAULT_LAYER_NORM_EPS = 1e-12


@dataclasses.dataclass
class BertConfig:
  """Hyper-parameters of a BERT encoder, with the names and meaning of the original `bert_config.json`.

  Args:
    vocab_size: number of WordPiece ids (rows of the word embedding).
    hidden_size: width of every transformer layer.
    num_hidden_layers: number of transformer blocks.
    num_attention_heads: heads per self-attention layer; must divide `hidden_size`.
    intermediate_size: width of the feed-forward layer.
    hidden_act: feed-forward activation; "gelu" is the tanh approximation, as in the original.
    hidden_dropout_prob: dropout on embeddings and sub-layer outputs.
    attention_probs_dropout_prob: dropout on attention probabilities.
    max_position_embeddings: longest sequence the position table supports.
    type_vocab_size: number of segment ids (2 for sentence pairs).
    initializer_range: stddev of the truncated-normal weight initialiser.
    layer_norm_eps: epsilon of every LayerNorm; 1e-12 as in the original (which has no such field).
      Written to `bert_config.json` only when it differs, so the file stays the original's.

  Example:
    >>> cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
    ...                  num_attention_heads=2, intermediate_size=64)
    >>> BertConfig.from_dict(cfg.to_dict()) == cfg
    True
  """

  vocab_size: int
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 16
  initializer_range: float = 0.02
  layer_norm_eps: float = DEFAULT_LAYER_NORM_EPS

  def __post_init__(self):
    self.validate()

  def validate(self, source="bert_config"):
    """Raises `UsageError` naming the first field whose value makes no sense."""
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "type_vocab_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{source}: {name} must be a positive integer, got {value!r}")
    if self.hidden_size % self.num_attention_heads:
      raise UsageError(
          f"{source}: hidden_size ({self.hidden_size}) is not divisible by "
          f"num_attention_heads ({self.num_attention_heads})")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
      value = getattr(self, name)
      if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise UsageError(f"{source}: {name} must be in [0, 1), got {value!r}")
    if not isinstance(self.initializer_range, (int, float)) or self.initializer_range <= 0:
      raise UsageError(f"{source}: initializer_range must be positive, got {self.initializer_range!r}")
    eps = self.layer_norm_eps
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
      raise UsageError(f"{source}: layer_norm_eps must be in (0, 1), got {eps!r}")
    if self.hidden_act not in _ACTIVATIONS:
      raise UsageError(f"{source}: hidden_act {self.hidden_act!r} is not one of {', '.join(_ACTIVATIONS)}")

  @property
  def head_size(self):
    return self.hidden_size // self.num_attention_heads

  @classmethod
  def from_dict(cls, values, source="bert_config"):
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
      raise UsageError(f"{source}: unknown field(s) {', '.join(unknown)}")
    if "vocab_size" not in values:
      raise UsageError(f"{source}: missing required field vocab_size")
    try:
      cfg = cls.__new__(cls)
      for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        setattr(cfg, f.name, values.get(f.name, default))
    except TypeError as e:  # pragma: no cover - defensive
      raise UsageError(f"{source}: {e}") from None
    cfg.validate(source)
    return cfg

  @classmethod
  def from_json_file(cls, path):
    """Reads a `bert_config.json` (local or any `tf.io.gfile` path)."""
    text = _read_text(path)
    try:
      values = json.loads(text)
    except json.JSONDecodeError as e:
      raise UsageError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(values, dict):
      raise UsageError(f"{path}: expected a JSON object")
    return cls.from_dict(values, source=path)

  def to_dict(self):
    values = dataclasses.asdict(self)
    if values["layer_norm_eps"] == DEFAULT_LAYER_NORM_EPS:
      del values["layer_norm_eps"]  # the original's eleven fields
    return values

  def to_json_string(self):
    return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

  def to_json_file(self, path):
    from bert_tf.utils.io_utils import atomic_write_text
    atomic_write_text(path, self.to_json_string())


def _read_text(path):
  if io_utils.is_remote(path):
    import tensorflow as tf
    if not tf.io.gfile.exists(path):
      raise UsageError(f"{path}: file not found")
    with tf.io.gfile.GFile(path, "r") as f:
      return f.read()
  if not os.path.exists(path):
    raise UsageError(f"{path}: file not found")
  with open(path, encoding="utf-8") as f:
    return f.read()
