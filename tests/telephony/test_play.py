"""The play action: a flow plays audio files fetched over HTTP or uploaded as storage files, and the called phone hears them."""

from __future__ import annotations

import asyncio
import functools
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tenant
from tests.media.test_audiofile import encode_tone
from tests.peers.baresip import Baresip, dominant_frequency
from tests.telephony.conftest import until
from voipbin.runtime import Platform

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip-core is installed by `make test`"),
]


@pytest.fixture
def media_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server for the files under a folder: (base URL, folder)."""
    folder = tmp_path / "media"
    folder.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", folder
    finally:
        server.shutdown()
        server.server_close()


async def test_the_phone_hears_an_mp3_after_a_file_that_cannot_play(
    phone: tuple[Baresip, dict[str, str]],
    client: httpx.AsyncClient,
    platform: Platform,
    alice: Tenant,
    media_server: tuple[str, Path],
) -> None:
    baresip, _ = phone
    base_url, folder = media_server
    (folder / "tone.mp3").write_bytes(encode_tone("mp3", "libmp3lame", seconds=2.0, frequency=440.0))
    (folder / "broken.mp3").write_bytes(b"<html>not audio</html>")
    source = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]["number"]
    body = {
        "source": {"type": "tel", "target": source},
        "destinations": [{"type": "extension", "target_name": "quickstart-phone"}],
        # Like VoIPBIN, a play that fails moves the flow on.
        "actions": [
            {"type": "play", "option": {"stream_urls": [f"{base_url}/broken.mp3"]}},
            {"type": "play", "option": {"stream_urls": [f"{base_url}/tone.mp3"]}},
        ],
    }

    response = await client.post("/v1.0/calls", params=alice.auth, json=body)

    assert response.status_code == 200, response.text
    call_url = f"/v1.0/calls/{response.json()['groupcalls'][0]['call_ids'][0]}"
    for _ in range(300):
        call = (await client.get(call_url, params=alice.auth)).json()
        if call["status"] == "hangup":
            break
        await asyncio.sleep(0.05)
    assert call["status"] == "hangup" and call["hangup_reason"] == "normal", call
    await until(lambda: baresip.heard() is not None, timeout=15)
    heard = baresip.heard()
    assert heard is not None
    loud = heard[abs(heard) > 1000]
    assert len(loud) >= 1.5 * 8000, len(loud)  # most of the 2 s tone, through G.711
    assert dominant_frequency(heard) == pytest.approx(440.0, abs=5.0)


async def test_the_phone_hears_an_uploaded_mp3_and_not_another_customers_file(
    phone: tuple[Baresip, dict[str, str]],
    client: httpx.AsyncClient,
    platform: Platform,
    alice: Tenant,
    bob: Tenant,
) -> None:
    baresip, _ = phone
    uploads = []
    for tenant, frequency, seconds in ((bob, 1000.0, 1.0), (alice, 440.0, 2.0)):
        tone_mp3 = encode_tone("mp3", "libmp3lame", seconds=seconds, frequency=frequency)
        files = {"file": ("tone.mp3", tone_mp3, "audio/mpeg")}
        uploaded = await client.post("/v1.0/storage_files", params=tenant.auth, files=files)
        assert uploaded.status_code == 200, uploaded.text
        uploads.append(uploaded.json()["uri_download"])
    bobs_url, alices_url = uploads
    assert alices_url.startswith("https://testserver/")  # no such host: the platform reads its own file from disk
    source = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]["number"]
    body = {
        "source": {"type": "tel", "target": source},
        "destinations": [{"type": "extension", "target_name": "quickstart-phone"}],
        "actions": [
            {"type": "play", "option": {"stream_urls": [bobs_url]}},  # not alice's: fails, and the flow moves on
            {"type": "play", "option": {"stream_urls": [alices_url]}},
        ],
    }

    response = await client.post("/v1.0/calls", params=alice.auth, json=body)

    assert response.status_code == 200, response.text
    call_url = f"/v1.0/calls/{response.json()['groupcalls'][0]['call_ids'][0]}"
    for _ in range(300):
        call = (await client.get(call_url, params=alice.auth)).json()
        if call["status"] == "hangup":
            break
        await asyncio.sleep(0.05)
    assert call["status"] == "hangup" and call["hangup_reason"] == "normal", call
    await until(lambda: baresip.heard() is not None, timeout=15)
    heard = baresip.heard()
    assert heard is not None
    loud = heard[abs(heard) > 1000]
    assert 1.5 * 8000 <= len(loud) <= 2.5 * 8000, len(loud)  # alice's 2 s tone, and not bob's 1 s one
    assert dominant_frequency(heard) == pytest.approx(440.0, abs=5.0)
