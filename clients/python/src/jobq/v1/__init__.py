"""Generated from proto/jobq/v1 by generate.py: do not edit."""
