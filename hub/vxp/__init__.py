"""The VXP wire protocol (the Government Office SDK's contract, ``VXP-API.md``).

``protocol`` is shared by the hub's VXP face and by lienthong's own VXP client.
"""
