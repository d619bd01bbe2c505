"""openbailian: self-hosted, DashScope-compatible Bailian agent applications."""

__version__ = "0.1.0"
