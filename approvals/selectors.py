"""Approvals selectors (being built; see the approvals issue)."""
