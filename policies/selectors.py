"""Policies selectors (being built; see the policies issue)."""
