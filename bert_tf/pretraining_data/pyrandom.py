"""Python's `random.Random` draws, reproduced in compiled code.

google-research/bert makes every choice of its pretraining data with one `random.Random(seed)`.
Calling that object once per token is what makes the original slow, but exact parity needs the very
same numbers. Python's generator is the Mersenne Twister MT19937, and the methods the original uses
are small functions of its 32-bit output stream:

- `getrandbits(k)` for k <= 32: one word shifted right by `32 - k`;
- `_randbelow(n)`: `getrandbits(n.bit_length())` repeated until the value is below `n`;
- `randint(a, b)`: `a + _randbelow(b - a + 1)`;
- `random()`: `((w1 >> 5) * 2**26 + (w2 >> 6)) / 2**53` from two consecutive words;
- `shuffle(x)`: for i from len(x) - 1 down to 1, swap x[i] with x[_randbelow(i + 1)].

The state lives in a uint32 array of 625 entries (624 twister words, then the read position), the
layout of `random.Random.getstate()`, so a state can move between Python and numba in both
directions. The draws are compiled twice, by numba in `pyrandom_jit` and in C in `_kernels.c`
(see `kernels`); both mutate that array in place. This module, the states, imports neither.

Example:
  state = state_from_seed(12345)
  x = pyrandom_jit.random_float(state)   # == random.Random(12345).random()
"""

import random

import numpy as np

STATE_WORDS = 624  # then the read position: a state is uint32[STATE_WORDS + 1]


def state_from_seed(seed):
  """Returns the uint32[625] state of `random.Random(seed)` (any seed Python accepts)."""
  return state_from_python(random.Random(seed))


def state_from_python(rng):
  """Copies the state of a `random.Random` object into a new uint32[625] array."""
  version, internal, _ = rng.getstate()
  if version != 3 or len(internal) != STATE_WORDS + 1:
    raise ValueError(f"unsupported random.Random state version {version}")
  return np.array(internal, dtype=np.uint32)


def state_to_python(state):
  """Builds a `random.Random` whose future draws continue from `state` (for tests and interop)."""
  rng = random.Random()
  rng.setstate((3, tuple(int(v) for v in state), None))
  return rng
