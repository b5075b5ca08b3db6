"""``raised(kind, func, ...)``: the message of the exception a call raises (for tests that assert it in full)."""

import pytest


def raised(kind, func, *args, **kwargs) -> str:
    """Call ``func(*args, **kwargs)``, require it to raise ``kind`` and return the exception's message."""
    with pytest.raises(kind) as err:
        func(*args, **kwargs)
    return str(err.value)
