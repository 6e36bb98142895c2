"""Errors the user can act on.

A ``BenchError`` is bad input (a suite, a file, an option): the CLI prints its message as one line
and exits with code 2. A ``PluginError`` is raised by a plugin about its own cell (for example "not
supported for this model"); the runner fails that cell only.
"""


class BenchError(Exception):
    """Bad input: one line that names the field or file and what to do."""


class PluginError(Exception):
    """A plugin cannot handle its cell; the message goes to the cell's error."""
