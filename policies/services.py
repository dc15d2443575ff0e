"""Policies services (being built; see the policies issue)."""
