"""The KDEF file-name grammar: ``<session><gender><identity><expression><angle>.JPG``.

``AF01ANS.JPG`` is session A, female 01, angry, straight (frontal). Sessions A and B photograph the
same 70 people, so the *subject* of ``AF01`` and ``BF01`` is ``F01``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SESSIONS = ("A", "B")
GENDERS = ("F", "M")
IDENTITIES_PER_GENDER = 35
EXPRESSIONS = ("AF", "AN", "DI", "HA", "NE", "SA", "SU")
EXPRESSION_NAMES = ("afraid", "angry", "disgusted", "happy", "neutral", "sad", "surprised")
ANGLES = ("FL", "HL", "S", "HR", "FR")
ANGLE_DEGREES = {"FL": -90, "HL": -45, "S": 0, "HR": 45, "FR": 90}

_NAME = re.compile(
    r"^(?P<session>[AB])(?P<gender>[FM])(?P<identity>\d{2})"
    r"(?P<expression>AF|AN|DI|HA|NE|SA|SU)(?P<angle>FL|HL|S|HR|FR)\.JPE?G$",
    re.IGNORECASE,
)


@dataclass(frozen=True, order=True)
class KDEFName:
    """One parsed KDEF file name."""

    session: str
    gender: str
    identity: int
    expression: str
    angle: str

    @property
    def subject(self) -> str:
        """The person, shared by both sessions: ``F01`` for ``AF01`` and ``BF01``."""
        return f"{self.gender}{self.identity:02d}"

    @property
    def folder(self) -> str:
        """The identity-session folder, e.g. ``AF01``."""
        return f"{self.session}{self.subject}"

    @property
    def filename(self) -> str:
        return f"{self.folder}{self.expression}{self.angle}.JPG"

    @property
    def label(self) -> int:
        return EXPRESSIONS.index(self.expression)

    @property
    def angle_index(self) -> int:
        return ANGLES.index(self.angle)

    @property
    def subgroups(self) -> dict[str, str]:
        """The people's groups the file name tells (for per-subgroup metrics): gender."""
        return {"gender": "female" if self.gender == "F" else "male"}


def parse_name(filename: str) -> KDEFName | None:
    """Parse a KDEF file name (case-insensitive); ``None`` when it does not follow the grammar."""
    match = _NAME.match(filename)
    if match is None:
        return None
    identity = int(match["identity"])
    if not 1 <= identity <= IDENTITIES_PER_GENDER:
        return None
    return KDEFName(
        session=match["session"].upper(),
        gender=match["gender"].upper(),
        identity=identity,
        expression=match["expression"].upper(),
        angle=match["angle"].upper(),
    )
