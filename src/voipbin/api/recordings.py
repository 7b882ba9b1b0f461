"""``/v1.0/recordings`` (calls recorded to WAV) and ``/v1.0/recordingfiles`` (their audio)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from voipbin.api import forwarding
from voipbin.api.crud import get_owned, list_view, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, StaffDep
from voipbin.api.errors import bad_request, not_found
from voipbin.runtime import Platform
from voipbin.store.models import Recording
from voipbin.views import Page, RecordingOut

router = APIRouter(prefix="/v1.0", tags=["recordings"])


async def _recording(platform: Platform, recording_id: str, customer_id: str) -> Recording:
    async with platform.store.session() as session:
        return await get_owned(session, Recording, recording_id, customer_id, "recording")


@router.get("/recordings", response_model=Page[RecordingOut])
async def list_recordings(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[RecordingOut]:
    return await list_view(platform, Recording, RecordingOut, who.customer_id, paging)


@router.get("/recordings/{recording_id}", response_model=RecordingOut)
async def get_recording(recording_id: str, platform: PlatformDep, who: StaffDep) -> RecordingOut:
    return RecordingOut.model_validate(await _recording(platform, recording_id, who.customer_id))


@router.delete("/recordings/{recording_id}", response_model=RecordingOut, summary="Delete a recording and its file")
async def delete_recording(recording_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> RecordingOut | Response:
    """A recording still in progress is stopped first. VoIPBIN publishes no event for this."""
    recording = await _recording(platform, recording_id, who.customer_id)
    if recording.status != "ended":
        answer = await forwarding.to_call_node(request, platform, who.customer_id, recording.reference_id)
        if answer is not None:
            return answer
    await platform.calls.stop_recording(recording)
    async with platform.store.transaction() as tx:
        recording = await get_owned(tx.session, Recording, recording_id, who.customer_id, "recording")
        soft_delete(recording, tx)
    path = platform.files.recording(recording)
    if path is not None:
        path.unlink(missing_ok=True)
    return RecordingOut.model_validate(recording)


async def _audio_file(platform: Platform, recording_id: str, customer_id: str) -> Path:
    recording = await _recording(platform, recording_id, customer_id)
    if recording.status != "ended":
        message = f"Recording {recording.id} is {recording.status}; its file is ready once it has ended."
        raise bad_request(message, "RECORDING_NOT_ENDED")
    path = platform.files.recording(recording)
    if path is None or not path.is_file():
        raise not_found("recordingfile")
    return path


@router.get(
    "/recordingfiles/{recording_id}",
    status_code=307,
    response_class=RedirectResponse,
    summary="Redirect to the recording's WAV file",
    responses={307: {"description": "Location is the file's download URL."}},
)
async def recording_file(recording_id: str, request: Request, platform: PlatformDep, who: StaffDep) -> RedirectResponse:
    """The download URL keeps this request's query, so a ``?token=`` or ``?accesskey=`` credential still applies."""
    await _audio_file(platform, recording_id, who.customer_id)
    location = f"/v1.0/recordingfiles/{recording_id}/file"
    if request.url.query:
        location += f"?{request.url.query}"
    return RedirectResponse(location, status_code=307)


@router.get(
    "/recordingfiles/{recording_id}/file",
    response_class=FileResponse,
    summary="Download the recording as a WAV: a call's in stereo (left: the far end, right: what it heard), a conference's mix in mono",
    responses={200: {"content": {"audio/wav": {}}}},
)
async def download_recording(recording_id: str, platform: PlatformDep, who: StaffDep) -> FileResponse:
    path = await _audio_file(platform, recording_id, who.customer_id)
    return FileResponse(path, media_type="audio/wav", filename=path.name)
