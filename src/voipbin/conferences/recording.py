"""A conference's recording: the whole mix, tick by tick, to one mono WAV, as a Recording row
(``reference_type`` ``conference``) with its events, like a call's."""

from __future__ import annotations

from voipbin.core.clock import Clock
from voipbin.core.ids import new_id
from voipbin.media.recorder import MonoWavWriter
from voipbin.store.db import Store
from voipbin.store.files import Files
from voipbin.store.models import Conference, Recording
from voipbin.views import announce


class ConferenceRecording:
    def __init__(self, store: Store, clock: Clock, files: Files, conference: Conference) -> None:
        self._store = store
        now = clock.now()
        recording_id = new_id()
        self.row = Recording(
            id=recording_id, customer_id=conference.customer_id, reference_type="conference",
            reference_id=conference.id, status="recording", format="wav",
            recording_name=f"conference_{conference.id}_{now:%Y-%m-%dT%H:%M:%S}", filenames=[f"{recording_id}.wav"],
            tm_start=now, tm_create=now,
        )  # fmt: skip
        path = files.recording(self.row)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = MonoWavWriter(path)
        self.stopped = False

    def feed(self, pcm: bytes) -> None:
        """The mixer's ``on_mix``: one tick of the whole conference."""
        self._writer.feed(pcm)

    async def start(self) -> None:
        async with self._store.transaction() as tx:
            tx.session.add(self.row)
            announce(tx, self.row, "recording_started")
            conference = await tx.session.get(Conference, self.row.reference_id, with_for_update=True)
            if conference is not None:
                conference.recording_id = self.row.id
                conference.recording_ids = [*conference.recording_ids, self.row.id]
                conference.tm_update = tx.clock.now()
                announce(tx, conference, "conference_updated")

    async def stop(self) -> None:
        """Close the file and record the end; idempotent."""
        if self.stopped:
            return
        self.stopped = True
        self._writer.close()
        async with self._store.transaction() as tx:
            row = await tx.session.get(Recording, self.row.id)
            if row is not None and row.status != "ended":
                row.status, row.tm_end = "ended", tx.clock.now()
                row.tm_update = row.tm_end
                announce(tx, row, "recording_finished")
            conference = await tx.session.get(Conference, self.row.reference_id, with_for_update=True)
            if conference is not None and conference.recording_id == self.row.id:
                conference.recording_id = ""  # as a call's: recording_ids keeps it
                conference.tm_update = tx.clock.now()
                announce(tx, conference, "conference_updated")
