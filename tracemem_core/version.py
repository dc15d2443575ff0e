SERVER_NAME = "tracemem"
SERVER_VERSION = "0.1.0"
PROTOCOL_VERSIONS = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]
# Revisions without a handshake (each request carries its version; server/discover instead of
# initialize): tracemem_site/mcp_modern.py.
MODERN_PROTOCOL_VERSIONS = ["2026-07-28"]
