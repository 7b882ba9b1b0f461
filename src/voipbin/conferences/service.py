"""Conferences: calls that hear each other through one mixer, and the participants' controls.

A conference lives on one node: the first call to join claims it for its node, which gives it a
mixer on its media ticker (:class:`~voipbin.media.mixer.Mixer`), and each joining call's endpoint
becomes a leg of it. A call on another node joins through a link to the mixing node (the context's
``join_elsewhere``; see ``voipbin.calls.links``). A call's flow reaches it through ``conference_join`` (the call context's
``conference_join``, wired here by the platform): the call takes a :class:`Seat`, runs the
conference's ``pre_flow_id``, stays until it leaves (kicked, the conference ended, it hung up),
then runs ``post_flow_id`` (which VoIPBIN stores and never runs) and its own flow goes on.

``type`` ``conference`` stays up until deleted or its ``timeout``; ``connect`` holds two calls
and ends when one of them leaves. Participants can be muted (the others stop hearing them),
made deaf, and put on hold (music, out of the mix); a participant can be a moderator, and one
that waits for a moderator hears music until one is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

import numpy as np
from sqlalchemy import select, update

from voipbin.calls.service import ConferenceJoinRequest, ConferenceRefused
from voipbin.conferences.recording import ConferenceRecording
from voipbin.conferences.transcription import ConferenceTranscription
from voipbin.core.clock import Clock
from voipbin.core.ids import new_id
from voipbin.media.endpoint import MediaEngine, Playback, RtpEndpoint
from voipbin.media.frames import SAMPLE_RATE_8K
from voipbin.media.mixer import Mixer, MixLeg
from voipbin.speech.service import LiveTranscriber
from voipbin.speech.stt import SttError
from voipbin.store.db import Store
from voipbin.store.files import Files
from voipbin.store.models import Conference, Conferencecall
from voipbin.views import announce

log = logging.getLogger(__name__)

MAX_TIMEOUT_S: Final = 86_400
CONNECT_SIZE: Final = 2
MAX_PARTICIPANTS: Final = 100
"""Per conference: the mix costs each tick a little per leg, and one node's ticker serves every call."""


def hold_music() -> bytes:
    """Four seconds of a soft arpeggio (8 kHz PCM), looped for a participant on hold or waiting."""
    notes = (261.63, 329.63, 392.00, 523.25, 392.00, 329.63, 293.66, 246.94)
    samples_per_note = SAMPLE_RATE_8K // 2
    t = np.arange(samples_per_note) / SAMPLE_RATE_8K
    envelope = np.minimum(1.0, np.minimum(t * 40, (t[-1] - t) * 8))
    tune = np.concatenate([np.sin(2 * np.pi * f * t) * envelope * 3000 for f in notes])
    return tune.astype("<i2").tobytes()


async def _one_node(request: ConferenceJoinRequest, node_id: str) -> bool:
    return False


@dataclass(frozen=True)
class ConferenceContext:
    store: Store
    clock: Clock
    media: MediaEngine
    files: Files
    node_id: str
    # Runs work that must outlive whoever asked for it (ending a conference on its timeout).
    spawn: Callable[[Coroutine[Any, Any, Any]], None]
    # A recogniser for one participant (options as speech.service.SpeechService.transcriber's),
    # and the check that refuses a language none here understands (SttError).
    transcriber: Callable[..., LiveTranscriber]
    check_transcription: Callable[[str, str], None]
    # Takes a call of this node into a conference mixed on another node (the calls' front door's
    # ``join_conference_on``); returns once it has left, False when it never joined.
    join_elsewhere: Callable[[ConferenceJoinRequest, str], Awaitable[bool]] = _one_node


@dataclass
class Participant:
    row_id: str
    call_id: str
    endpoint: RtpEndpoint
    leg: MixLeg
    moderator: bool
    waits_for_moderator: bool
    end_conference_on_exit: bool
    muted: bool = False
    deaf: bool = False
    hold: bool = False
    left: asyncio.Event = field(default_factory=asyncio.Event)
    music: asyncio.Task[None] | None = None


class Room:
    """A conference live on this node: its mixer and its participants."""

    def __init__(self, conference: Conference, mixer: Mixer) -> None:
        self.conference_id = conference.id
        self.customer_id = conference.customer_id
        self.type = conference.type
        self.mixer = mixer
        self.participants: dict[str, Participant] = {}
        self.ending = False
        self.recording: ConferenceRecording | None = None
        self.recording_timer: asyncio.TimerHandle | None = None
        self.transcription: ConferenceTranscription | None = None

    @property
    def moderated(self) -> bool:
        return any(p.moderator for p in self.participants.values())


class ConferenceError(Exception):
    """A refused request about a conference; ``reason`` is the API's, ``status`` its HTTP status."""

    def __init__(self, message: str, reason: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.status = status


class ConferenceService:
    def __init__(self, ctx: ConferenceContext) -> None:
        self.ctx = ctx
        self.rooms: dict[str, Room] = {}
        self._music = hold_music()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    # -- conferences ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Arm the timeouts of conferences still progressing (a restart must not make them endless)."""
        async with self.ctx.store.session() as session:
            timed = (await session.scalars(
                select(Conference).where(Conference.status == "progressing", Conference.timeout > 0,
                                         Conference.tm_delete.is_(None))
            )).all()  # fmt: skip
        for conference in timed:
            self.arm_timeout(conference)

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for room in list(self.rooms.values()):
            self._kick_all(room)
            await self._end_recording(room)
            await self._end_transcription(room)
        async with self.ctx.store.transaction() as tx:  # the next call to join mixes them, on its node
            await tx.session.execute(update(Conference).where(Conference.node_id == self.ctx.node_id).values(node_id=""))

    async def forget_nodes(self, node_ids: list[str]) -> None:
        """Conferences mixed on nodes that died lost their participants with their calls: record
        each participant as gone, so the next call to join mixes the conference on its own node."""
        node_ids = [node_id for node_id in node_ids if node_id]  # "" is a conference no node mixes
        if not node_ids:
            return
        async with self.ctx.store.session() as session:
            orphaned = (await session.scalars(select(Conference.id).where(
                Conference.node_id.in_(node_ids), Conference.tm_delete.is_(None)
            ))).all()  # fmt: skip
        if not orphaned:
            return  # the usual case, checked on every heartbeat: no write
        async with self.ctx.store.transaction() as tx:
            now = tx.clock.now()
            stranded = (await tx.session.scalars(select(Conferencecall).where(
                Conferencecall.conference_id.in_(orphaned), Conferencecall.status.in_(("joining", "joined", "leaving"))
            ))).all()  # fmt: skip
            for row in stranded:
                row.status, row.talking, row.tm_update = "leaved", False, now
                announce(tx, row, "conferencecall_leaved")
            for conference in (await tx.session.scalars(select(Conference).where(Conference.id.in_(orphaned)))).all():
                conference.conferencecall_ids, conference.node_id, conference.tm_update = [], "", now
                announce(tx, conference, "conference_updated")

    def arm_timeout(self, conference: Conference) -> None:
        """End the conference ``timeout`` seconds after it was created (again after a change)."""
        if (timer := self._timers.pop(conference.id, None)) is not None:
            timer.cancel()
        if conference.timeout <= 0 or conference.status != "progressing":
            return
        ends_at = conference.tm_create + timedelta(seconds=conference.timeout)
        delay = max(0.0, (ends_at - self.ctx.clock.now()).total_seconds())
        conference_id = conference.id
        loop = asyncio.get_running_loop()
        self._timers[conference_id] = loop.call_later(delay, lambda: self.ctx.spawn(self.end(conference_id)))

    async def end(self, conference_id: str, *, delete: bool = False) -> Conference | None:
        """End the conference (its timeout, a connect's other side leaving, or DELETE): ``terminating``,
        every participant leaves, then ``terminated``. Idempotent."""
        if (timer := self._timers.pop(conference_id, None)) is not None:
            timer.cancel()
        async with self.ctx.store.transaction() as tx:
            row = await tx.session.get(Conference, conference_id, with_for_update=True)
            if row is None:
                return None
            if row.status not in ("terminating", "terminated"):
                row.status, row.tm_update = "terminating", tx.clock.now()
                announce(tx, row, "conference_updated")
        room = self.rooms.get(conference_id)
        if room is not None:
            room.ending = True
            self._kick_all(room)
            await self._until_empty(room)
            await self._end_recording(room)
            await self._end_transcription(room)
        async with self.ctx.store.transaction() as tx:
            row = await tx.session.get(Conference, conference_id, with_for_update=True)
            if row is None:
                return None
            now = tx.clock.now()
            if row.status != "terminated":
                row.status, row.tm_end = "terminated", now
            if delete and row.tm_delete is None:
                row.tm_delete = now
            row.tm_update = now
            announce(tx, row, "conference_deleted" if delete else "conference_updated")
        return row

    async def _until_empty(self, room: Room) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                while room.participants:
                    await asyncio.sleep(0.02)

    def _kick_all(self, room: Room) -> None:
        for participant in list(room.participants.values()):
            participant.left.set()

    # -- participants --------------------------------------------------------------------------

    async def seat(self, request: ConferenceJoinRequest) -> Seat:
        """The CallContext's ``conference_join``: a place for the call, checked but not taken yet."""
        conference = await self._joinable(request.customer_id, request.conference_id)
        return Seat(self, request, conference.pre_flow_id, conference.post_flow_id)

    async def _joinable(self, customer_id: str, conference_id: str) -> Conference:
        async with self.ctx.store.session() as session:
            conference = await session.scalar(
                select(Conference).where(Conference.id == conference_id.lower(), Conference.customer_id == customer_id,
                                         Conference.tm_delete.is_(None))
            )  # fmt: skip
        if conference is None:  # another customer's is as absent as a missing one
            raise ConferenceRefused(f"conference {conference_id} does not exist in this call's account")
        if conference.status != "progressing":
            raise ConferenceRefused(f"conference {conference.id} is {conference.status}")
        if self._mixed_elsewhere(conference):
            return conference  # the mixing node admits the call, or refuses it
        room = self.rooms.get(conference.id)
        size = len(room.participants) if room is not None else 0
        limit = CONNECT_SIZE if conference.type == "connect" else MAX_PARTICIPANTS
        if size >= limit:
            raise ConferenceRefused(f"conference {conference.id} is full ({limit} calls)")
        return conference

    def _mixed_elsewhere(self, conference: Conference) -> bool:
        return bool(conference.node_id and conference.node_id != self.ctx.node_id)

    async def _mixing_node(self, conference_id: str) -> str:
        """The node that mixes the conference: the one that does already, else (claimed now) this one.
        The claim is made under the row's lock, so two nodes never both start mixing it."""
        async with self.ctx.store.transaction() as tx:
            conference = await tx.session.get(Conference, conference_id, with_for_update=True)
            assert conference is not None
            if not conference.node_id:
                conference.node_id = self.ctx.node_id
            return conference.node_id

    async def attend(self, request: ConferenceJoinRequest) -> None:
        conference = await self._joinable(request.customer_id, request.conference_id)
        if (node_id := await self._mixing_node(conference.id)) != self.ctx.node_id:
            if not await self.ctx.join_elsewhere(request, node_id):
                raise ConferenceRefused(f"conference {conference.id} is mixed on another node, which did not take the call")
            return
        room = self._room(conference)
        options = request.options
        row = Conferencecall(
            id=new_id(), customer_id=request.customer_id, activeflow_id=request.activeflow_id,
            conference_id=conference.id, reference_type="call", reference_id=request.call_id, status="joining",
            muted=bool(options.get("muted")), tm_create=self.ctx.clock.now(),
        )  # fmt: skip
        async with self.ctx.store.transaction() as tx:
            tx.session.add(row)
            announce(tx, row, "conferencecall_joining")
        try:
            leg = room.mixer.add(request.endpoint, row.id, muted=row.muted)
        except RuntimeError:  # the call's media closed (it hung up) or is bridged elsewhere
            await self._gone_before_joining(row.id)
            self._drop_if_idle(room)
            raise ConferenceRefused(f"call {request.call_id} has no media to join with") from None
        participant = Participant(
            row.id, request.call_id, request.endpoint, leg, muted=row.muted,
            moderator=bool(options.get("moderator")), waits_for_moderator=bool(options.get("wait_for_moderator")),
            end_conference_on_exit=bool(options.get("end_conference_on_exit")),
        )  # fmt: skip
        room.participants[row.id] = participant
        self._refresh_waiting(room)  # before it hears anyone: a waiting participant starts with music
        if room.transcription is not None:
            room.transcription.listen(row.id, request.endpoint)
        try:
            await self._joined(conference.id, row.id)
            await participant.left.wait()
        finally:
            await asyncio.shield(self._leave(room, participant))

    async def _gone_before_joining(self, row_id: str) -> None:
        async with self.ctx.store.transaction() as tx:
            row = await tx.session.get(Conferencecall, row_id)
            if row is not None:
                row.status, row.tm_update = "leaved", tx.clock.now()
                announce(tx, row, "conferencecall_leaved")

    def _room(self, conference: Conference) -> Room:
        room = self.rooms.get(conference.id)
        if room is None:
            room = self.rooms[conference.id] = Room(conference, Mixer())
            room.mixer.on_talking = lambda leg, talking: self.ctx.spawn(self._talking(leg.key, talking))
            self.ctx.media.add_mixer(room.mixer)
        return room

    async def _joined(self, conference_id: str, row_id: str) -> None:
        # The conference's row is locked where its lists change: calls join and leave at once.
        async with self.ctx.store.transaction() as tx:
            row = await tx.session.get(Conferencecall, row_id)
            conference = await tx.session.get(Conference, conference_id, with_for_update=True)
            assert row is not None and conference is not None
            now = tx.clock.now()
            row.status, row.tm_update = "joined", now
            announce(tx, row, "conferencecall_joined")
            conference.conferencecall_ids = [*conference.conferencecall_ids, row_id]
            conference.tm_update = now
            announce(tx, conference, "conference_updated")

    async def _leave(self, room: Room, participant: Participant) -> None:
        self._stop_music(participant)
        participant.leg.close()
        if room.transcription is not None:
            await room.transcription.unlisten(participant.row_id)
        room.participants.pop(participant.row_id, None)
        async with self.ctx.store.transaction() as tx:
            row = await tx.session.get(Conferencecall, participant.row_id)
            conference = await tx.session.get(Conference, room.conference_id, with_for_update=True)
            assert row is not None and conference is not None
            now = tx.clock.now()
            row.status, row.tm_update = "leaving", now
            announce(tx, row, "conferencecall_leaving")
            row.status, row.talking = "leaved", False
            announce(tx, row, "conferencecall_leaved")
            conference.conferencecall_ids = [i for i in conference.conferencecall_ids if i != participant.row_id]
            conference.tm_update = now
            announce(tx, conference, "conference_updated")
        self._drop_if_idle(room)
        if not room.ending and (room.type == "connect" or participant.end_conference_on_exit):
            room.ending = True
            self.ctx.spawn(self.end(room.conference_id))
        elif participant.moderator:
            self._refresh_waiting(room)

    def _drop_if_idle(self, room: Room) -> None:
        """A room with nobody in it and nothing recording it no longer mixes."""
        busy = room.participants or room.recording is not None or room.transcription is not None
        if not busy and self.rooms.get(room.conference_id) is room:
            room.mixer.close()
            self.ctx.media.remove_mixer(room.mixer)
            del self.rooms[room.conference_id]

    # -- recording -----------------------------------------------------------------------------

    async def start_recording(self, conference: Conference, duration_s: int = 0) -> None:
        """Record the mix to a WAV until ``stop_recording``, ``duration_s`` (0: no limit) or the end."""
        if conference.status != "progressing":
            raise ConferenceError(f"Conference {conference.id} is {conference.status}; only a progressing one is recorded.",
                                  "CONFERENCE_STATE_INVALID")
        room = self._room(conference)
        if room.recording is not None:
            raise ConferenceError(f"Conference {conference.id} is being recorded already.", "RECORDING_ALREADY_ACTIVE", 409)
        recording = room.recording = ConferenceRecording(self.ctx.store, self.ctx.clock, self.ctx.files, conference)
        room.mixer.on_mix = recording.feed
        if duration_s > 0:
            loop = asyncio.get_running_loop()
            room.recording_timer = loop.call_later(duration_s, lambda: self.ctx.spawn(self._end_recording(room)))
        await recording.start()

    async def stop_recording(self, conference: Conference) -> None:
        room = self.rooms.get(conference.id)
        if room is None or room.recording is None:
            raise ConferenceError(f"Conference {conference.id} is not being recorded.", "RECORDING_NOT_ACTIVE")
        await self._end_recording(room)

    async def _end_recording(self, room: Room) -> None:
        recording, room.recording = room.recording, None
        if room.recording_timer is not None:
            room.recording_timer.cancel()
            room.recording_timer = None
        room.mixer.on_mix = None
        if recording is not None:
            await recording.stop()
        self._drop_if_idle(room)

    # -- transcription -------------------------------------------------------------------------

    async def start_transcription(self, conference: Conference, language: str) -> None:
        """Transcribe each participant, now and as they join, until ``stop_transcription`` or the end."""
        if conference.status != "progressing":
            raise ConferenceError(f"Conference {conference.id} is {conference.status}; only a progressing one is transcribed.",
                                  "CONFERENCE_STATE_INVALID")
        try:
            self.ctx.check_transcription(language or "en-US", "")
        except SttError as error:
            raise ConferenceError(str(error), "UNSUPPORTED_LANGUAGE") from None
        room = self._room(conference)
        if room.transcription is not None:
            raise ConferenceError(f"Conference {conference.id} is being transcribed already.", "TRANSCRIBE_ALREADY_ACTIVE", 409)
        transcription = room.transcription = ConferenceTranscription(
            self.ctx.store, self.ctx.clock, self.ctx.transcriber, conference, language
        )
        await transcription.start()
        for participant in room.participants.values():
            transcription.listen(participant.row_id, participant.endpoint)

    async def ensure_transcription(self, customer_id: str, conference_id: str, language: str) -> str:
        """The id of the conference's transcription, started now if it has none (an AI summary asks)."""
        async with self.ctx.store.session() as session:
            conference = await session.scalar(select(Conference).where(
                Conference.id == conference_id, Conference.customer_id == customer_id, Conference.tm_delete.is_(None)
            ))  # fmt: skip
        if conference is None:
            raise ConferenceError(f"Conference {conference_id} does not exist in your account.", "CONFERENCE_NOT_FOUND", 404)
        room = self.rooms.get(conference.id)
        if room is None or room.transcription is None:
            await self.start_transcription(conference, language)
            room = self.rooms[conference.id]
        assert room.transcription is not None
        return room.transcription.row.id

    async def stop_transcription(self, conference: Conference) -> None:
        room = self.rooms.get(conference.id)
        if room is None or room.transcription is None:
            raise ConferenceError(f"Conference {conference.id} is not being transcribed.", "TRANSCRIBE_NOT_ACTIVE")
        await self._end_transcription(room)

    async def _end_transcription(self, room: Room) -> None:
        transcription, room.transcription = room.transcription, None
        if transcription is not None:
            await transcription.stop()
        self._drop_if_idle(room)

    async def _talking(self, row_id: str, talking: bool) -> None:
        async with self.ctx.store.transaction() as tx:
            row = await tx.session.get(Conferencecall, row_id)
            if row is None or row.status != "joined":
                return
            row.talking, row.tm_update = talking, tx.clock.now()
            announce(tx, row, "conferencecall_talking_started" if talking else "conferencecall_talking_stopped")

    def find(self, row_id: str) -> tuple[Room, Participant] | None:
        for room in self.rooms.values():
            if (participant := room.participants.get(row_id)) is not None:
                return room, participant
        return None

    def kick(self, row_id: str) -> bool:
        """Make the participant leave (its flow goes on after conference_join); False if not here."""
        found = self.find(row_id)
        if found is None:
            return False
        found[1].left.set()
        return True

    async def control(self, row: Conferencecall, changes: Mapping[str, bool]) -> Conferencecall:
        """Mute, deafen or hold a participant joined here (``changes``: muted, deaf, hold)."""
        found = self.find(row.id)
        if found is None:
            raise ConferenceRefused(f"conferencecall {row.id} is {row.status}; only a joined participant can be changed")
        room, participant = found
        for name in ("muted", "deaf", "hold"):
            if name in changes:
                setattr(participant, name, bool(changes[name]))
        self._apply(room, participant)
        async with self.ctx.store.transaction() as tx:
            stored = await tx.session.get(Conferencecall, row.id)
            assert stored is not None
            stored.muted, stored.deaf, stored.hold = participant.muted, participant.deaf, participant.hold
            stored.tm_update = tx.clock.now()
            announce(tx, stored, "conferencecall_updated")
        return stored

    def _refresh_waiting(self, room: Room) -> None:
        for participant in room.participants.values():
            self._apply(room, participant)

    def _apply(self, room: Room, participant: Participant) -> None:
        """The leg as its controls say: on hold, or waiting for a moderator, it hears music and is not heard."""
        away = participant.hold or (participant.waits_for_moderator and not room.moderated)
        participant.leg.muted = participant.muted or away
        participant.leg.deaf = participant.deaf or away
        if away and participant.music is None:
            participant.music = asyncio.ensure_future(self._play_music(participant.endpoint))
        elif not away:
            self._stop_music(participant)

    async def _play_music(self, endpoint: RtpEndpoint) -> None:
        playback: Playback | None = None
        try:
            while not endpoint.closed:
                playback = endpoint.play(self._music)
                await playback.done
        finally:
            if playback is not None:
                endpoint.cancel(playback)

    def _stop_music(self, participant: Participant) -> None:
        if participant.music is not None:
            participant.music.cancel()
            participant.music = None


class Seat:
    """A call's place in a conference before it joins (see ConferenceService.seat)."""

    def __init__(self, service: ConferenceService, request: ConferenceJoinRequest, pre_flow_id: str, post_flow_id: str) -> None:
        self._service = service
        self._request = request
        self.pre_flow_id = pre_flow_id
        self.post_flow_id = post_flow_id

    async def attend(self) -> None:
        try:
            await self._service.attend(self._request)
        except ConferenceRefused as refusal:  # it ended, or filled up, during the pre-flow
            log.info("call %s did not join: %s", self._request.call_id, refusal)
