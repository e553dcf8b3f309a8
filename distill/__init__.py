"""Reflow/InstaFlow and dataset distillation (CDA). Methods land here in later issues."""
