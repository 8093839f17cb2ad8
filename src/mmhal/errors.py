"""Errors a user can cause. The CLI prints their message as one sentence and exits with code 2."""


class UserError(Exception):
    """A mistake in the user's input (a path, a file, a name, a shape); its message is one sentence."""


class DataError(UserError):
    """A data file that cannot be used as it is."""
