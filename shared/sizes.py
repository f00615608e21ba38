"""Sizes in config files: a number of bytes, or ``512KiB``, ``1MiB``, ``1GiB``.

``parse_size`` turns any accepted form into whole bytes; ``format_size`` goes the
other way for summaries and messages, choosing the largest unit that shows the
value exactly. Only binary units: ``MB`` means 1,000,000 bytes to some readers
and 1,048,576 to others, so it is refused rather than guessed.
"""

from __future__ import annotations

import re

SIZE_HINT = "must be a size such as 65536, 512KiB, 1MiB"

_SIZE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(b|kib|mib|gib)?", re.IGNORECASE)
_UNIT_BYTES = {"b": 1, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}


def parse_size(value: object) -> int:
    """Bytes for ``value``; raises ``ValueError(SIZE_HINT)`` for anything else."""
    # bool is an int subclass, and YAML reads `size: yes` as True.
    if isinstance(value, bool):
        raise ValueError(SIZE_HINT)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(SIZE_HINT)
        number, unit = match.group(1), (match.group(2) or "b").lower()
        if unit == "b" and not number.isdigit():
            raise ValueError(SIZE_HINT)  # a fraction of a byte
        size = round(float(number) * _UNIT_BYTES[unit])
    else:
        raise ValueError(SIZE_HINT)
    if size < 0:
        raise ValueError(SIZE_HINT)
    return size


def format_size(size: int) -> str:
    """A short form that ``parse_size`` reads back: 1048576 -> 1MiB, 1536 -> 1.5KiB, 100 -> 100B."""
    for unit, factor in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if size >= factor and (size * 1000) % factor == 0:  # exact to three decimals
            text = f"{size / factor:.3f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{size}B"
