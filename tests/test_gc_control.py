import gc

from bert_tf.utils import gc_control
from bert_tf.pretraining_data import instances


def test_paused_restores_the_collector_state_even_on_error():
  assert gc.isenabled()
  try:
    with gc_control.paused():
      assert not gc.isenabled()
      with gc_control.paused():  # nested: the inner block must not re-enable it
        pass
      assert not gc.isenabled()
      raise KeyError
  except KeyError:
    pass
  assert gc.isenabled()
  gc.disable()
  try:
    with gc_control.paused():
      pass
    assert not gc.isenabled()  # it was off before: stays off
  finally:
    gc.enable()


def test_frozen_freezes_then_unfreezes_and_leaves_other_freezes_alone():
  assert gc.get_freeze_count() == 0
  with gc_control.frozen():
    assert gc.get_freeze_count() > 0
  assert gc.get_freeze_count() == 0
  gc.freeze()
  try:
    count = gc.get_freeze_count()
    with gc_control.frozen():
      pass
    assert gc.get_freeze_count() == count  # someone else's freeze is not undone
  finally:
    gc.unfreeze()


def test_splitting_documents_leaves_the_collector_on():
  seen = []
  documents = instances.split_documents(
      ["a b", "", "c"], lambda lines: seen.append(gc.isenabled()) or [[1, 2]] * len(lines))
  assert seen == [False] and gc.isenabled()
  assert documents.num_documents == 2
