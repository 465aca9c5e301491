"""Control of Python's cyclic garbage collector around steps that create many objects.

The collector runs after every 700 net new container objects (lists, tuples, dicts, ...) and, every
so often, scans every tracked object in the process. Tokenizing a shard creates a list per line,
and a process that loaded numba tracks some 100,000 long-lived objects, so without these the
collector took about 8% of create_pretraining_data's time while finding nothing to free.
"""

import contextlib
import gc


@contextlib.contextmanager
def paused():
  """Pauses the collector during a block that creates many objects but no reference cycles."""
  enabled = gc.isenabled()
  gc.disable()
  try:
    yield
  finally:
    if enabled:
      gc.enable()


@contextlib.contextmanager
def frozen():
  """Puts every object alive at entry out of the collector's reach until exit (`gc.freeze`), so
  that collections only scan what the block creates. Processes forked inside the block keep them
  frozen, which also spares the pages they share with this one from being copied when a
  collection writes to the objects' headers. Does nothing if something else froze objects already."""
  if gc.get_freeze_count():
    yield
    return
  gc.freeze()
  try:
    yield
  finally:
    gc.unfreeze()
