"""The one exception type for problems a user caused (bad file, option, model)."""


class MtpdecError(Exception):
    """A user-facing error. The CLI prints it as one line `mtpdec: error: <msg>` and exits 2.

    The message names the offending value (file, tensor, type, option).
    """
