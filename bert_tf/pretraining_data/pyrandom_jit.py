"""The draws of `pyrandom` compiled by numba: Python's `random.Random` methods on a uint32[625] state.

See `pyrandom` for the algorithm and the state layout; the C extension (`_kernels.c`) has the same
draws, and `kernels` chooses between the two.
"""

import numba
import numpy as np

from bert_tf.pretraining_data.pyrandom import STATE_WORDS as _N

_M = 397
_MATRIX_A = np.uint32(0x9908B0DF)
_UPPER_MASK = np.uint32(0x80000000)
_LOWER_MASK = np.uint32(0x7FFFFFFF)


@numba.njit(cache=True)
def _mix(state, i, j, k):
  y = (state[i] & _UPPER_MASK) | (state[j] & _LOWER_MASK)
  value = state[k] ^ (y >> np.uint32(1))
  if y & np.uint32(1):
    value ^= _MATRIX_A
  state[i] = value


@numba.njit(cache=True)
def _twist(state):
  """Regenerates the 624 words (the reference algorithm, split to avoid index wrap-around)."""
  for i in range(_N - _M):
    _mix(state, i, i + 1, i + _M)
  for i in range(_N - _M, _N - 1):
    _mix(state, i, i + 1, i + _M - _N)
  _mix(state, _N - 1, 0, _M - 1)
  state[_N] = 0


@numba.njit(cache=True)
def next_word(state):
  """The next 32-bit output of the generator (as uint32)."""
  if state[_N] >= _N:
    _twist(state)
  y = state[state[_N]]
  state[_N] += 1
  y ^= y >> np.uint32(11)
  y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
  y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
  y ^= y >> np.uint32(18)
  return y


@numba.njit(cache=True)
def getrandbits(state, k):
  """`random.getrandbits(k)` for 1 <= k <= 64, as int64 (k = 64 wraps to negative)."""
  if k <= 32:
    return np.int64(next_word(state) >> np.uint32(32 - k))
  low = np.uint64(next_word(state))
  high = np.uint64(next_word(state) >> np.uint32(64 - k))
  return np.int64(low | (high << np.uint64(32)))


@numba.njit(cache=True)
def _bit_length(n):
  """`int.bit_length` for 0 <= n < 2**63."""
  k = 0
  if n >= 1 << 32:
    n >>= 32
    k += 32
  if n >= 1 << 16:
    n >>= 16
    k += 16
  if n >= 1 << 8:
    n >>= 8
    k += 8
  while n > 0:
    n >>= 1
    k += 1
  return k


@numba.njit(cache=True)
def randbelow(state, n):
  """`random._randbelow(n)`: a uniform integer in [0, n) for n >= 1, by rejection sampling."""
  k = _bit_length(n)
  r = getrandbits(state, k)
  while r >= n:
    r = getrandbits(state, k)
  return r


@numba.njit(cache=True)
def randint(state, low, high):
  """`random.randint(low, high)`: inclusive on both ends (requires low <= high)."""
  return low + randbelow(state, high - low + 1)


@numba.njit(cache=True)
def random_float(state):
  """`random.random()`: a float in [0, 1) with 53 random bits."""
  a = next_word(state) >> np.uint32(5)
  b = next_word(state) >> np.uint32(6)
  return (np.float64(a) * 67108864.0 + np.float64(b)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True)
def shuffle(state, values):
  """`random.shuffle(values)` in place on a 1-d array."""
  for i in range(values.shape[0] - 1, 0, -1):
    j = randbelow(state, i + 1)
    tmp = values[i]
    values[i] = values[j]
    values[j] = tmp


@numba.njit(cache=True)
def permutation(state, n):
  """The order `random.shuffle` gives a list of n items: `result[i]` is the item now at slot i."""
  order = np.arange(n, dtype=np.int64)
  shuffle(state, order)
  return order
