"""``/v1.0/storage_files``: files a customer uploads, such as WAV or MP3 audio for the ``play`` action.

The bytes are kept where ``voipbin.store.files`` says (ids only, no name a client chose). A play
action whose ``stream_urls`` holds a file's ``uri_download`` reads it from there (see
``voipbin.calls.runner``). VoIPBIN answers ``/{id}/file`` with a 307 to a signed URL; here it
answers with the bytes themselves, to the same credentials as every other route.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse

from voipbin.api.crud import get_owned, list_view, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, StaffDep
from voipbin.api.errors import ApiError, bad_request, not_found
from voipbin.core.ids import new_id
from voipbin.media.audiofile import MAX_BYTES, decode_to_pcm8k
from voipbin.runtime import Platform
from voipbin.store.models import StorageFile
from voipbin.views import Page, StorageFileOut, announce

router = APIRouter(prefix="/v1.0", tags=["storage"])

MAX_FILE_BYTES = MAX_BYTES  # the largest audio file the play action takes (the body cap is in errors.UPLOAD_BODY_CAPS)
# VoIPBIN's "rag" (documents, kept as they are); the others must be audio the play action can decode.
FileType = Literal["rag", "", "audio", "talk"]
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text holds no NUL


def _clean_filename(raw: str | None) -> str:
    """The last path segment of the client's file name, without control characters."""
    name = PurePosixPath(_UNSAFE.sub("", (raw or "").replace("\\", "/"))).name
    return name[-255:]


def _media_type(filename: str) -> str:
    """Audio types by extension; anything else downloads as bytes (never HTML from our origin)."""
    guessed = mimetypes.guess_type(filename)[0] or ""
    return guessed if guessed.startswith("audio/") else "application/octet-stream"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)


async def _storage_file(platform: Platform, file_id: str, customer_id: str) -> StorageFile:
    async with platform.store.session() as session:
        return await get_owned(session, StorageFile, file_id, customer_id, "storage_file")


@router.post(
    "/storage_files", response_model=StorageFileOut, summary="Upload a file (WAV or MP3 audio for play, or a rag document)"
)
async def upload_storage_file(
    request: Request,
    platform: PlatformDep,
    who: StaffDep,
    file: Annotated[UploadFile, File(description="The file, at most 20 MiB.")],
    file_type: Annotated[
        FileType, Form(alias="type", description="'rag' keeps any file; '', 'audio' or 'talk' must be playable audio.")
    ] = "",
    name: Annotated[str, Form(max_length=255, pattern=NO_NUL)] = "",
    detail: Annotated[str, Form(max_length=4096, pattern=NO_NUL)] = "",
) -> StorageFileOut:
    """Multipart form: ``file``, and optional ``type``, ``name`` (defaults to the file's name) and ``detail``.

    Play an audio file with ``{"type": "play", "option": {"stream_urls": [<uri_download>]}}``.
    """
    data = await file.read(MAX_FILE_BYTES + 1)
    await file.close()
    if len(data) > MAX_FILE_BYTES:
        raise ApiError(413, "REQUEST_TOO_LARGE", f"Files are limited to {MAX_FILE_BYTES} bytes.")
    if not data:
        raise bad_request("'file' is empty.", "EMPTY_FILE")
    if file_type != "rag":
        try:
            await asyncio.to_thread(decode_to_pcm8k, data)
        except ValueError as error:
            raise bad_request(f"'file': {error}.", "INVALID_AUDIO_FILE") from None

    file_id = new_id()
    filename = _clean_filename(file.filename) or file_id
    path = platform.files.storage_file(who.customer_id, file_id)
    await asyncio.to_thread(_write, path, data)
    try:
        async with platform.store.transaction() as tx:
            row = StorageFile(
                id=file_id,
                customer_id=who.customer_id,
                owner_type="agent" if who.agent_id else "",
                owner_id=who.agent_id,
                type=file_type,
                name=name or filename,
                detail=detail,
                filename=filename,
                filesize=len(data),
                uri_download=str(request.url_for("download_storage_file", storage_file_id=file_id)),
                tm_create=tx.clock.now(),
            )
            tx.session.add(row)
            return announce(tx, row, "storage_file_created", StorageFileOut)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@router.get("/storage_files", response_model=Page[StorageFileOut])
async def list_storage_files(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[StorageFileOut]:
    return await list_view(platform, StorageFile, StorageFileOut, who.customer_id, paging)


@router.get("/storage_files/{storage_file_id}", response_model=StorageFileOut)
async def get_storage_file(storage_file_id: str, platform: PlatformDep, who: StaffDep) -> StorageFileOut:
    return StorageFileOut.model_validate(await _storage_file(platform, storage_file_id, who.customer_id))


@router.delete("/storage_files/{storage_file_id}", response_model=StorageFileOut, summary="Delete a file and its bytes")
async def delete_storage_file(storage_file_id: str, platform: PlatformDep, who: StaffDep) -> StorageFileOut:
    async with platform.store.transaction() as tx:
        row = await get_owned(tx.session, StorageFile, storage_file_id, who.customer_id, "storage_file")
        soft_delete(row, tx)
        deleted = announce(tx, row, "storage_file_deleted", StorageFileOut)
    platform.files.storage_file(row.customer_id, row.id).unlink(missing_ok=True)
    return deleted


@router.get(
    "/storage_files/{storage_file_id}/file",
    response_class=FileResponse,
    summary="Download the file's bytes",
    responses={200: {"content": {"application/octet-stream": {}, "audio/mpeg": {}, "audio/x-wav": {}}}},
)
async def download_storage_file(storage_file_id: str, platform: PlatformDep, who: StaffDep) -> FileResponse:
    """The bytes as uploaded (VoIPBIN redirects to a signed URL instead; this needs your credential)."""
    row = await _storage_file(platform, storage_file_id, who.customer_id)
    path = platform.files.storage_file(row.customer_id, row.id)
    if not path.is_file():
        raise not_found("storage_file")
    return FileResponse(
        path, media_type=_media_type(row.filename), filename=row.filename, headers={"X-Content-Type-Options": "nosniff"}
    )
