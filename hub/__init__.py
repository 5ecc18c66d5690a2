"""lienthong: document-exchange hub for signed edXML packages (QCVN 102:2016)."""

__version__ = "0.1.0.dev0"
