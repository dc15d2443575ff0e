"""Approvals services (being built; see the approvals issue)."""
