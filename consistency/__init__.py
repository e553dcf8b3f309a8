"""Improved Consistency Training (iCT). Lands in a later issue."""
