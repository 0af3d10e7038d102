"""The one exception type the command line turns into a message instead of a traceback."""
from __future__ import annotations


class ClientError(Exception):
    """Something the user can act on: a refused connection, a server error, a bad file.

    The message is complete on its own (it names the server or the file), so
    the command line prints ``str(exc)`` and nothing else.
    """
