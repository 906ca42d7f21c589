"""Errors a stage raises when it cannot do its job; the CLI turns them into exit status 1."""


class StageError(RuntimeError):
    """A stage could not run, or its result is not acceptable; the message says why and the fix."""


class MissingInputError(StageError, FileNotFoundError):
    """A stage's input (an earlier stage's output) is not in the run directory."""
