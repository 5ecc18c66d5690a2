"""edXML packages: hardened reading, the model, validation rules and the builder."""

from hub.edxml.model import DocumentPackage, Package, StatusPackage
from hub.edxml.parser import ParsedPackage, parse_package

__all__ = ["DocumentPackage", "Package", "ParsedPackage", "StatusPackage", "parse_package"]
