"""User-facing errors: one line naming the problem and the fix."""


class GenfamError(Exception):
  """A problem with the user's input (config, data, checkpoint, shapes).

  The message is one line that names the problem and says how to fix it;
  `genfam.main` prints it without a traceback and exits with status 2.
  """
