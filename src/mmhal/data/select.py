"""Checks on the modalities a run asks for."""
from __future__ import annotations

from typing import Sequence

from ..config import RunConfig
from ..errors import DataError
from .base import MultimodalData

#: The student's modalities when neither ``--student`` nor a recipe names them: HAPT's gyroscope.
DEFAULT_STUDENT = tuple(RunConfig().student)


def check_modalities(data: MultimodalData, names: Sequence[str], role: str) -> list[str]:
    """The modality names ``names`` as a list, after checking ``data`` has each of them.

    ``role`` says who asks (e.g. "teacher", "student") and appears in the error message. With ``role``
    "student" and ``names`` equal to the default student (HAPT's ``gyro``, ``RunConfig.student``), the message
    says that this is the default and how to choose the student (``--student NAME``); callers checking
    something other than the run's choice (e.g. a trained student's modalities) pass another ``role``.
    """
    names = list(names)
    have = ", ".join(sorted(data.modalities))
    if not names:
        raise DataError(f"the {role} asks for no modality; name at least one of: {have}")
    for name in names:
        if name in data.modalities:
            continue
        if role == "student" and tuple(names) == DEFAULT_STUDENT:
            default = ",".join(DEFAULT_STUDENT)
            raise DataError(
                f"the student modality defaults to '{default}', a modality of the default dataset HAPT, which "
                f"this data does not have (its modalities: {have}); choose the student's modalities with "
                f"--student NAME (e.g. --student {sorted(data.modalities)[0]}) or student: [NAME] in a recipe"
            )
        raise DataError(f"the {role} asks for modality '{name}', which the data does not have (it has: {have})")
    duplicate = next((m for m in names if names.count(m) > 1), None)
    if duplicate is not None:
        raise DataError(f"the {role} asks for modality '{duplicate}' twice")
    return names
