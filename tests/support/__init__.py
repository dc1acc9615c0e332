"""Test and benchmark support code (simulated detector and reviewer)."""
