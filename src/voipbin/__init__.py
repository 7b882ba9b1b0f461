"""A self-hostable programmable voice platform that speaks the VoIPBIN v1.0 API."""

__version__ = "0.1.0"
