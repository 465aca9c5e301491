"""What the bad-input tests assert of a command's stderr, shared by the per-script matrices."""


def assert_quiet_start_up(proc):
  """TensorFlow was imported, but its start-up INFO lines were kept out of the terminal."""
  assert "I0000 " not in proc.stderr and "absl::InitializeLog" not in proc.stderr, proc.stderr[-3000:]


def assert_resumed_past(proc, broken, resumed):
  """The run ended well and its one warning names the broken checkpoint and the one it used."""
  assert proc.returncode == 0, proc.stderr[-3000:]
  warnings = [line for line in proc.stderr.splitlines() if "cannot be restored" in line]
  assert len(warnings) == 1, proc.stderr[-3000:]
  assert warnings[0].startswith("W") and f"] {broken}: cannot be restored (" in warnings[0]
  assert warnings[0].endswith(f"), truncated or corrupt; resuming from {resumed}")
