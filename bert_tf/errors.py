"""One exception type for user-facing errors, and the wrapper that turns it into a one-line message.

Anything the user can fix (a bad flag, a missing file, a malformed line) raises `UsageError` with a
message that names the flag, file or line at fault. The command-line entry points run their `main`
through `run_main`, which prints `error: <message>` on one line and exits with status 2 instead of
showing a traceback.
"""

import sys


class UsageError(Exception):
  """A problem with the user's input: flags, files or data. The message is shown as is."""


def run_main(main, argv=None):
  """Runs an absl `main(argv)` and converts `UsageError` into a one-line message and exit code 2."""
  from absl import app

  def _wrapped(args):
    try:
      return main(args)
    except UsageError as e:
      sys.stderr.write(f"error: {e}\n")
      sys.stderr.flush()
      sys.exit(2)
    except KeyboardInterrupt:
      sys.stderr.write("error: interrupted\n")
      sys.exit(130)

  app.run(_wrapped, argv=argv)
