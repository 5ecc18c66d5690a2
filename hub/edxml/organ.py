"""Organisation identifiers (OrganId) in both forms that coexist on the wire.

* QCVN 102 form ``DDD.DD.DD.LNN`` is read right to left: the rightmost group is
  the level-1 body; zeros mean "level not used".
* QĐ 20/2020/QĐ-TTg form ``LNN.X.Y...`` is read left to right.
* Anything else that matches the tolerant pattern is a legacy/system id; it is
  accepted syntactically and must then be found in the directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

QCVN102 = re.compile(r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}$")
QD20 = re.compile(r"^(?=.{3,35}$)[A-Z][0-9]{2}(\.[A-Z0-9]+)*$")
TOLERANT = re.compile(r"^(?=.{1,35}$)[A-Z0-9]+(\.[A-Z0-9]+)+$")

OrganForm = Literal["qcvn102", "qd20", "legacy"]


@dataclass(frozen=True, slots=True)
class OrganId:
    value: str
    form: OrganForm

    @property
    def level(self) -> int:
        """Depth in the administrative tree: 1 for a ministry or province."""
        if self.form == "qcvn102":
            groups = self.value.split(".")[:3]
            return 1 + sum(1 for g in groups if int(g) != 0)
        if self.form == "qd20":
            return len(self.value.split("."))
        return 0

    @property
    def level1(self) -> str | None:
        """The level-1 body code (e.g. ``G22``, ``H53``)."""
        if self.form == "qcvn102":
            return self.value.rsplit(".", 1)[1]
        if self.form == "qd20":
            return self.value.split(".", 1)[0]
        return None

    def parent(self) -> OrganId | None:
        """The body directly above, or None at level 1 (and for legacy ids)."""
        if self.form == "qcvn102":
            groups = self.value.split(".")
            for i in range(3):
                if int(groups[i]) != 0:
                    groups[i] = "0" * len(groups[i])
                    return OrganId(".".join(groups), "qcvn102")
            return None
        if self.form == "qd20":
            head, sep, _ = self.value.rpartition(".")
            return OrganId(head, "qd20") if sep else None
        return None

    def __str__(self) -> str:
        return self.value


def classify(value: str) -> OrganId:
    """Classify an id by its form; ``ValueError`` when it matches no pattern."""
    if QCVN102.match(value):
        return OrganId(value, "qcvn102")
    if QD20.match(value):
        return OrganId(value, "qd20")
    if TOLERANT.match(value):
        return OrganId(value, "legacy")
    raise ValueError(f"organ id {value!r} matches no accepted pattern")
