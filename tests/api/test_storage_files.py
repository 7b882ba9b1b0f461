"""``/v1.0/storage_files``: upload (multipart), list, get, download and delete, owner checks and caps."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant
from tests.media.test_audiofile import encode_tone
from voipbin.api.errors import UPLOAD_BODY_CAPS
from voipbin.api.storage_files import MAX_FILE_BYTES
from voipbin.runtime import Platform

UPLOAD = ("POST", "/v1.0/storage_files")
NOT_AUDIO = b"<html>not audio</html>"


async def upload(
    client: httpx.AsyncClient, tenant: Tenant, filename: str, data: bytes, content_type: str = "audio/mpeg", **form: str
) -> httpx.Response:
    return await client.post(
        "/v1.0/storage_files", params=tenant.auth, files={"file": (filename, data, content_type)}, data=form
    )


async def test_upload_list_get_download_and_delete(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    wav = encode_tone("wav", "pcm_s16le", seconds=0.5)
    mp3 = encode_tone("mp3", "libmp3lame", seconds=0.5)
    events = platform.bus.subscribe()

    first = await upload(client, alice, "tone.wav", wav, "audio/wav")
    second = await upload(client, alice, "greeting.mp3", mp3, type="rag", name="Greeting", detail="hello")

    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    wav_file, mp3_file = first.json(), second.json()
    assert {k: wav_file[k] for k in ("customer_id", "type", "name", "detail", "filename", "filesize", "tm_delete")} == {
        "customer_id": alice.customer_id, "type": "", "name": "tone.wav", "detail": "", "filename": "tone.wav",
        "filesize": len(wav), "tm_delete": "",
    }
    assert wav_file["uri_download"] == f"https://testserver/v1.0/storage_files/{wav_file['id']}/file"
    assert wav_file["owner_type"] == "agent" and wav_file["owner_id"] and wav_file["tm_create"]
    assert (mp3_file["type"], mp3_file["name"], mp3_file["detail"]) == ("rag", "Greeting", "hello")
    assert mp3_file["filesize"] == len(mp3)
    stored = platform.settings.data_dir / "storage" / alice.customer_id / wav_file["id"]
    assert stored.read_bytes() == wav

    listed = (await client.get("/v1.0/storage_files", params=alice.auth)).json()
    assert listed["result"] == [mp3_file, wav_file]  # newest first
    paged = (await client.get("/v1.0/storage_files", params={**alice.auth, "page_size": 1})).json()
    assert paged["result"] == [mp3_file] and paged["next_page_token"]
    got = await client.get(f"/v1.0/storage_files/{wav_file['id']}", params={"accesskey": alice.accesskey})
    assert got.status_code == 200 and got.json() == wav_file

    for made, data, media_type in ((wav_file, wav, "audio/"), (mp3_file, mp3, "audio/mpeg")):
        download = await client.get(made["uri_download"], params={"accesskey": alice.accesskey})
        assert download.status_code == 200
        assert download.content == data
        assert download.headers["content-type"].startswith(media_type)
        assert download.headers["content-disposition"] == f'attachment; filename="{made["filename"]}"'
        assert download.headers["x-content-type-options"] == "nosniff"
    assert (await client.get(wav_file["uri_download"])).status_code == 401

    deleted = await client.delete(f"/v1.0/storage_files/{wav_file['id']}", params=alice.auth)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["id"] == wav_file["id"] and deleted.json()["tm_delete"]
    assert not stored.exists()
    for url in (f"/v1.0/storage_files/{wav_file['id']}", wav_file["uri_download"]):
        gone = await client.get(url, params=alice.auth)
        assert gone.status_code == 404 and gone.json()["error"]["reason"] == "STORAGE_FILE_NOT_FOUND"
    assert (await client.delete(f"/v1.0/storage_files/{wav_file['id']}", params=alice.auth)).status_code == 404
    assert (await client.get("/v1.0/storage_files", params=alice.auth)).json()["result"] == [mp3_file]

    seen = []
    async with asyncio.timeout(5):
        async for event in events:
            if event.event_type.startswith("storage_file_"):
                seen.append((event.event_type, event.data["id"]))
            if len(seen) == 3:
                break
    events.close()
    assert seen == [
        ("storage_file_created", wav_file["id"]),
        ("storage_file_created", mp3_file["id"]),
        ("storage_file_deleted", wav_file["id"]),
    ]


async def test_a_client_path_never_reaches_the_disk(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    response = await upload(client, alice, "../../..\\evil.wav", encode_tone("wav", "pcm_s16le", seconds=0.2))

    assert response.status_code == 200, response.text
    made = response.json()
    assert made["filename"] == "evil.wav"
    folder = platform.settings.data_dir / "storage" / alice.customer_id
    assert [p.name for p in folder.iterdir()] == [made["id"]]


@pytest.mark.parametrize(
    ("request_kwargs", "reason"),
    [
        ({"files": {"file": ("x.mp3", NOT_AUDIO, "audio/mpeg")}}, "INVALID_AUDIO_FILE"),
        ({"files": {"file": ("x.mp3", NOT_AUDIO, "audio/mpeg")}, "data": {"type": "audio"}}, "INVALID_AUDIO_FILE"),
        ({"files": {"file": ("x.wav", b"", "audio/wav")}}, "EMPTY_FILE"),
        ({"files": {"other": ("x.wav", b"RIFF", "audio/wav")}}, "MISSING_REQUEST_PARAMETER"),
        ({"data": {"type": "rag"}}, "MISSING_REQUEST_PARAMETER"),
        ({"json": {"file": "tone.wav"}}, "MISSING_REQUEST_PARAMETER"),
        ({"files": {"file": ("x.wav", b"RIFF", "audio/wav")}, "data": {"type": "document"}}, "INVALID_REQUEST_PARAMETER"),
        ({"files": {"file": ("x.wav", b"RIFF", "audio/wav")}, "data": {"name": "n" * 256}}, "INVALID_REQUEST_PARAMETER"),
        ({"files": {"file": ("x.wav", b"RIFF", "audio/wav")}, "data": {"detail": "a\x00b"}}, "INVALID_REQUEST_PARAMETER"),
    ],
)
async def test_bad_uploads_are_refused(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, request_kwargs: dict[str, Any], reason: str
) -> None:
    response = await client.post("/v1.0/storage_files", params=alice.auth, **request_kwargs)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["reason"] == reason
    assert (await client.get("/v1.0/storage_files", params=alice.auth)).json()["result"] == []
    assert not (platform.settings.data_dir / "storage" / alice.customer_id).exists() or not any(
        (platform.settings.data_dir / "storage" / alice.customer_id).iterdir()
    )


async def test_a_broken_multipart_body_is_refused(client: httpx.AsyncClient, alice: Tenant) -> None:
    response = await client.post(
        "/v1.0/storage_files",
        params=alice.auth,
        content=b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc",
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )

    assert response.status_code == 400, response.text
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_any_file_may_be_a_rag_document(client: httpx.AsyncClient, alice: Tenant) -> None:
    response = await upload(client, alice, "notes.html", b"<script>alert(1)</script>", "text/html", type="rag")

    assert response.status_code == 200, response.text
    download = await client.get(response.json()["uri_download"], params=alice.auth)
    assert download.content == b"<script>alert(1)</script>"
    assert download.headers["content-type"] == "application/octet-stream"  # never served as HTML from our origin
    assert download.headers["content-disposition"].startswith("attachment;")


async def test_uploads_have_their_own_size_cap(client: httpx.AsyncClient, alice: Tenant) -> None:
    assert MAX_FILE_BYTES == 20 << 20 and UPLOAD_BODY_CAPS[UPLOAD] > MAX_FILE_BYTES

    # Over the general 1 MiB cap and under the upload cap: taken (as a rag document, not decoded).
    big = await upload(client, alice, "big.bin", b"\0" * (5 << 20), "application/octet-stream", type="rag")
    assert big.status_code == 200, big.text
    assert big.json()["filesize"] == 5 << 20

    # The file over its cap, the body still under the route's.
    over = await upload(client, alice, "over.bin", b"\0" * (MAX_FILE_BYTES + 1), "application/octet-stream", type="rag")
    assert over.status_code == 413, over.text
    assert over.json()["error"]["reason"] == "REQUEST_TOO_LARGE"

    # The body over the route's cap: refused before the app reads it, with the envelope.
    huge = await upload(client, alice, "huge.bin", b"\0" * UPLOAD_BODY_CAPS[UPLOAD], "application/octet-stream", type="rag")
    assert huge.status_code == 413
    assert huge.json()["error"]["status"] == "PAYLOAD_TOO_LARGE" and huge.json()["error"]["request_id"]

    # Other routes keep the general cap.
    flow = {"name": "x" * (2 << 20), "actions": [{"type": "hangup"}]}
    elsewhere = await client.post("/v1.0/flows", params=alice.auth, json=flow)
    assert elsewhere.status_code == 413
    assert [f["id"] for f in (await client.get("/v1.0/storage_files", params=alice.auth)).json()["result"]] == [big.json()["id"]]


async def test_another_customers_files_are_invisible(client: httpx.AsyncClient, alice: Tenant, bob: Tenant) -> None:
    made = (await upload(client, alice, "tone.wav", encode_tone("wav", "pcm_s16le", seconds=0.2), "audio/wav")).json()

    for method, url in (
        ("GET", f"/v1.0/storage_files/{made['id']}"),
        ("GET", made["uri_download"]),
        ("DELETE", f"/v1.0/storage_files/{made['id']}"),
    ):
        response = await client.request(method, url, params=bob.auth)
        assert response.status_code == 404, (method, url)
        assert made["id"] not in response.text
    assert (await client.get("/v1.0/storage_files", params=bob.auth)).json()["result"] == []
    assert (await client.get(made["uri_download"], params=alice.auth)).status_code == 200
