"""The offline LLM: which models a customer may name, and the packaged one served over the OpenAI protocol."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from voipbin.ai.config import AiConfigError
from voipbin.ai.local import (
    LOCAL_DIR_SETTING,
    PACKAGED_MODEL,
    LocalModelError,
    LocalModels,
    LocalModelServer,
    local_models,
    model_path,
    packaged_models,
    probe,
    thread_count,
)

END_OF_TURN = 2  # SmolLM2's <|im_end|>: suppressed where a test needs a generation of known length


def test_the_packaged_model_ships_with_the_install() -> None:
    path = packaged_models()[PACKAGED_MODEL]

    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert model_path(PACKAGED_MODEL, {}, Path("/nonexistent")) == path


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "/etc/passwd", "", "x..y", ".hidden", "a\\b"])
def test_a_name_that_could_be_a_path_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "x.gguf").write_bytes(b"")

    with pytest.raises(AiConfigError, match="not a model name"):
        model_path(name, {}, tmp_path)


def test_an_unknown_model_is_refused_naming_the_models_and_the_setting(tmp_path: Path) -> None:
    with pytest.raises(AiConfigError) as refused:
        model_path("llama-70b", {}, tmp_path)

    message = str(refused.value)
    assert "'llama-70b'" in message and PACKAGED_MODEL in message
    assert LOCAL_DIR_SETTING in message and str(tmp_path / "models") in message


def test_an_operators_gguf_is_found_by_its_stem(tmp_path: Path) -> None:
    folder = tmp_path / "gguf"
    folder.mkdir()
    for filename in ("qwen2.5-0.5b-instruct.gguf", "notes.txt", "bad name.gguf"):
        (folder / filename).write_bytes(b"")
    environ = {LOCAL_DIR_SETTING: str(folder)}

    assert model_path("qwen2.5-0.5b-instruct", environ, tmp_path) == folder / "qwen2.5-0.5b-instruct.gguf"
    assert set(local_models(environ, tmp_path)) == {PACKAGED_MODEL, "qwen2.5-0.5b-instruct"}


def test_the_data_dirs_models_folder_is_the_default(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.gguf").write_bytes(b"")

    assert model_path("mine", {}, tmp_path) == tmp_path / "models" / "mine.gguf"


@pytest.mark.parametrize("setting", ["0", "-1", "two", "1.5"])
def test_a_bad_thread_count_is_refused(setting: str) -> None:
    with pytest.raises(AiConfigError, match="VOIPBIN_LLM_LOCAL_THREADS"):
        thread_count({"VOIPBIN_LLM_LOCAL_THREADS": setting})
    with pytest.raises(AiConfigError):
        LocalModels(Path("."), {"VOIPBIN_LLM_LOCAL_THREADS": setting})


def gone(pid: int) -> bool:
    """Whether the process has exited (a zombie nobody reaps counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


async def chunks(client: httpx.AsyncClient, url: str, prompt: str, **options: object) -> AsyncIterator[dict]:
    """The streamed chat completion's chunks (SSE ``data:`` lines up to ``[DONE]``)."""
    body = {"model": PACKAGED_MODEL, "messages": [{"role": "user", "content": prompt}], "stream": True, **options}
    async with client.stream("POST", f"{url}/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                if line == "data: [DONE]":
                    return
                yield json.loads(line[6:])


@pytest.mark.slow
async def test_the_packaged_model_streams_an_answer_and_is_stopped(tmp_path: Path) -> None:
    models = LocalModels(tmp_path, environ={})
    try:
        url = await models.endpoint(PACKAGED_MODEL)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert await models.endpoint(PACKAGED_MODEL) == url  # one server per model and pool
        batch = await models.endpoint(PACKAGED_MODEL, "batch")  # summaries queue on a server of their own
        assert batch != url and (tmp_path / "logs" / f"llm-{PACKAGED_MODEL}-batch.log").exists()

        async with httpx.AsyncClient(timeout=60) as client:
            pieces = [c async for c in chunks(client, url, "What is the capital of France?", max_tokens=40)]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in pieces)
        assert text.strip()
        assert pieces[-1]["choices"][0]["finish_reason"] in ("stop", "length")
        pids = [server.pid for server in models._servers.values()]
        assert len(pids) == 2 and None not in pids and (tmp_path / "logs" / f"llm-{PACKAGED_MODEL}.log").exists()
    finally:
        await models.close()

    assert all(gone(pid) for pid in pids if pid is not None)
    with pytest.raises(LocalModelError, match="stopped"):
        await models.endpoint(PACKAGED_MODEL)


@pytest.mark.slow
async def test_a_server_that_died_is_started_again(tmp_path: Path) -> None:
    server = LocalModelServer(packaged_models()[PACKAGED_MODEL], log_file=tmp_path / "llm.log")
    try:
        await server.url()
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        await asyncio.sleep(0.2)

        again = await server.url()
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await client.get(f"{again}/models")).status_code == 200
        assert server.starts == 2
    finally:
        await server.close()


@pytest.mark.slow
async def test_a_model_that_does_not_load_fails_with_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(1000))
    server = LocalModelServer(broken, log_file=tmp_path / "llm.log")
    try:
        with pytest.raises(LocalModelError, match="Failed to load model") as failed:
            await server.url()
        assert "exited with status 1" in str(failed.value) and str(tmp_path / "llm.log") in str(failed.value)
        assert server.pid is None
    finally:
        await server.close()


@pytest.mark.slow
async def test_requests_queue_and_a_closed_stream_stops_its_generation(tmp_path: Path) -> None:
    """The server answers one request at a time: a second waits for the first to finish (not cutting
    it short), and a client that closes its stream frees the model at once."""
    server = LocalModelServer(packaged_models()[PACKAGED_MODEL], log_file=tmp_path / "llm.log")
    endless = {"logit_bias": {str(END_OF_TURN): -100}}  # runs to max_tokens
    try:
        url = await server.url()
        async with httpx.AsyncClient(timeout=60) as client:
            started = asyncio.Event()

            async def first() -> tuple[float, str | None]:
                finish = None
                async for chunk in chunks(client, url, "Tell me a story.", max_tokens=60, **endless):
                    started.set()
                    finish = chunk["choices"][0]["finish_reason"] or finish
                return time.perf_counter(), finish

            async def second() -> float:
                await started.wait()
                async for chunk in chunks(client, url, "Hello!", max_tokens=3):
                    if chunk["choices"][0]["delta"].get("content"):
                        return time.perf_counter()
                raise AssertionError("no answer")

            (first_done, finish), second_answered = await asyncio.gather(first(), second())
            assert finish == "length"  # not interrupted by the second request
            assert second_answered > first_done

            # A long generation, abandoned after ten tokens: the next request does not wait for it.
            stamps: list[float] = []
            async for chunk in chunks(client, url, "Tell me a long story.", max_tokens=400, **endless):
                if chunk["choices"][0]["delta"].get("content"):
                    stamps.append(time.perf_counter())
                if len(stamps) == 10:
                    break
            remaining = (stamps[-1] - stamps[0]) / 9 * 390
            began = time.perf_counter()
            async for chunk in chunks(client, url, "Hello!", max_tokens=3):
                if chunk["choices"][0]["delta"].get("content"):
                    break
            waited = time.perf_counter() - began
            assert waited < remaining / 3, f"waited {waited:.2f} s; the abandoned generation had {remaining:.1f} s left"
    finally:
        await server.close()


@pytest.mark.slow
def test_the_server_exits_when_the_platform_is_killed(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from voipbin.ai.local import LocalModelServer, packaged_models\n"
        "async def main():\n"
        "    server = LocalModelServer(packaged_models()['smollm2'], log_file=Path(sys.argv[1]))\n"
        "    await server.url()\n"
        "    print(server.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    child = 0
    with subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "llm.log")], stdout=subprocess.PIPE, env=env, text=True
    ) as platform:
        try:
            assert platform.stdout is not None
            child = int(platform.stdout.readline())
            platform.kill()
            platform.wait()
            deadline = time.monotonic() + 10
            while not gone(child) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert gone(child)
        finally:
            platform.kill()
            if child and not gone(child):
                os.kill(child, signal.SIGKILL)


@pytest.mark.slow
async def test_the_probe_generates_a_token_without_a_server() -> None:
    assert await probe(packaged_models()[PACKAGED_MODEL])
