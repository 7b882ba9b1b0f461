"""The local LLM's process: ``python -m voipbin.ai.local_worker <llama_cpp.server arguments>``.

It runs llama-cpp-python's own OpenAI-compatible server (``llama_cpp.server``) with two guards the
bare command lacks: it exits when its stdin closes, so a platform that is killed leaves no server
behind (as the speech workers do), and it drops the environment variables that server would read
as its settings (pydantic-settings, case-insensitive: HOST, PORT, API_KEY, MODEL, ...), so that an
operator's environment cannot move its port or make it demand a key.

``python -m voipbin.ai.local_worker --probe MODEL`` loads the model and prints one generated token:
``voipbin doctor``'s check, in a process of its own because a llama.cpp built for another CPU dies
of SIGILL.
"""

from __future__ import annotations

import os
import sys
import threading


def _exit_on_stdin_eof() -> None:
    # The raw descriptor, not sys.stdin: a daemon thread blocked in a buffered read would abort
    # the interpreter's own shutdown (a failed start would then end in SIGABRT, not its error).
    while os.read(0, 4096):
        pass
    os._exit(0)  # nobody is left to read an answer: skip uvicorn's wait for open streams


def _drop_server_settings() -> None:
    from llama_cpp.server.settings import Settings

    names = {name.lower() for name in Settings.model_fields} | {"config_file"}
    for key in [key for key in os.environ if key.lower() in names]:
        del os.environ[key]


def _probe(model: str) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False)
    reply = llm.create_chat_completion(messages=[{"role": "user", "content": "Say hello."}], max_tokens=1)
    print(reply["choices"][0]["message"]["content"])  # type: ignore[index]


def main() -> None:
    if sys.argv[1:2] == ["--probe"]:
        _probe(sys.argv[2])
        return
    threading.Thread(target=_exit_on_stdin_eof, name="stdin-eof", daemon=True).start()
    _drop_server_settings()
    from llama_cpp.server.__main__ import main as serve

    serve()  # type: ignore[no-untyped-call]  # llama_cpp.server.__main__ is unannotated


if __name__ == "__main__":
    main()
