"""Checks on the modalities a run asks for."""
from __future__ import annotations

from typing import Sequence

from ..errors import DataError
from .base import MultimodalData


def check_modalities(data: MultimodalData, names: Sequence[str], role: str) -> list[str]:
    """The modality names ``names`` as a list, after checking ``data`` has each of them.

    ``role`` says who asks (e.g. "teacher", "student") and appears in the error message.
    """
    names = list(names)
    if not names:
        raise DataError(f"the {role} asks for no modality; name at least one of: {', '.join(data.modalities)}")
    for name in names:
        if name not in data.modalities:
            raise DataError(
                f"the {role} asks for modality '{name}', which the data does not have "
                f"(it has: {', '.join(data.modalities)})"
            )
    duplicate = next((m for m in names if names.count(m) > 1), None)
    if duplicate is not None:
        raise DataError(f"the {role} asks for modality '{duplicate}' twice")
    return names
