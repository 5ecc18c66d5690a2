"""Namespaces and fixed names of the edXML format (QCVN 102:2016)."""

from typing import Final

EDXML: Final = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DSIG: Final = "http://www.w3.org/2000/09/xmldsig#"


def q(local: str) -> str:
    """Clark name of an element in the edXML namespace."""
    return f"{{{EDXML}}}{local}"


# Status codes that appear on the wire (EDXML.md section 6).
STATUS_CODES: Final = frozenset({"01", "02", "03", "04", "05", "06", "13", "15", "16"})
STATUS_MEANINGS: Final = {
    "01": "arrived",
    "02": "refused",
    "03": "accepted",
    "04": "assigned",
    "05": "processing",
    "06": "finished",
    "13": "take-back requested",
    "15": "update/take-back agreed",
    "16": "update/take-back refused",
}
