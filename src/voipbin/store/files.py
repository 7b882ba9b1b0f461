"""Where the platform keeps customers' files under its data directory.

Paths are made of ids only (never a name a client chose), one folder per customer, so no
request can name a path outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voipbin.store.models import Recording


@dataclass(frozen=True)
class Files:
    data_dir: Path

    def storage_file(self, customer_id: str, file_id: str) -> Path:
        """An uploaded storage file's bytes."""
        return self.data_dir / "storage" / customer_id / file_id

    def recording(self, row: Recording) -> Path | None:
        """A recording's WAV (once it has started); None for a row without a file."""
        if not row.filenames:
            return None
        return self.data_dir / "recordings" / row.customer_id / str(row.filenames[0])
