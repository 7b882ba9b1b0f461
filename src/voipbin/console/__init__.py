"""The admin console: a static single-page app under ``/console/`` that uses the public API only.

Plain HTML, CSS and ES modules from ``static/`` (no build step, nothing fetched from elsewhere);
``voipbin.api.console`` serves them, with ``/console/config.json``.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
