"""The exception a training run stops with on purpose (a save that failed, a non-finite loss).

Its message says why, what was kept and how to continue; ``mpt-train`` prints it without a traceback and exits 1.
"""


class TrainingStopped(Exception):
    """A run stopped on purpose; the message names the cause, the files kept and the way to continue."""
