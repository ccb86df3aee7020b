"""The SDK boundary: every private attribute of the MCP SDK mcpgov relies on is reached from
:mod:`mcpgov._sdk.compat`, and request facts are read from SDK objects only in the adapters.

``tests/test_sdk_compat.py`` fails loudly when an SDK release moves any of them.
"""
