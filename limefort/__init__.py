"""limefort: one-way sync from Lime Go to Fortnox."""

__version__ = "0.1.0"
