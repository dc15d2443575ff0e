"""Offline verification of TraceMem traces (and, later, receipts).

This package never imports Django: an auditor can copy it next to an exported trace and run it.
"""
