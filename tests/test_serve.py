"""`scratchlm-serve`: transformers' OpenAI-compatible server on a ScratchLM directory, over loopback, with the
`openai` client: greedy text equals local `generate`, streaming equals non-streaming, concurrent requests all
complete, a malformed request gets a 4xx naming the problem."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

openai = pytest.importorskip("openai", reason='scratchlm-serve needs transformers\' serving extras')
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from scratchlm.inference.serve import ServeArguments, start_server  # noqa: E402

MAX_TOKENS = 12


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_causal_lm_dir):
    port = _free_port()
    serve = start_server(ServeArguments(model_dir=str(tiny_causal_lm_dir), port=port, device="cpu"), non_blocking=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start within 60 s"
            time.sleep(0.2)
        yield base_url
    finally:
        serve.kill_server()
    assert not serve._thread.is_alive(), "the server thread is still running after kill_server"


@pytest.fixture(scope="module")
def local_greedy(tiny_causal_lm_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir).eval()

    def generate(messages) -> str:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]  # fmt: skip
        with torch.inference_mode():
            output = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                    max_new_tokens=MAX_TOKENS)  # fmt: skip
        return tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)

    return generate


PROMPTS = ["hello, how are you?", "春风又绿江南岸", "Numbers like 2019"]


def test_greedy_reply_equals_local_generate_streamed_or_not(server, local_greedy, tiny_causal_lm_dir):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPTS[0]}]
    expected = local_greedy(messages)
    assert expected, "the tiny model generated nothing: the comparison would be empty"

    response = client.chat.completions.create(
        model=str(tiny_causal_lm_dir), messages=messages, max_tokens=MAX_TOKENS, temperature=0
    )
    assert response.choices[0].message.content == expected
    assert response.usage.completion_tokens <= MAX_TOKENS

    stream = client.chat.completions.create(
        model=str(tiny_causal_lm_dir), messages=messages, max_tokens=MAX_TOKENS, temperature=0, stream=True
    )
    chunks = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len(chunks) > 2  # streamed piece by piece, not in one event
    # transformers' streaming decoder holds back bytes of an unfinished UTF-8 character and never sends them when
    # the stream ends; a random model emits such byte tokens, which the full decode shows as U+FFFD.
    assert "".join(chunks) == expected.rstrip("\ufffd")


def test_concurrent_requests_all_complete(server, local_greedy, tiny_causal_lm_dir):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", timeout=120)

    def ask(prompt):
        messages = [{"role": "user", "content": prompt}]
        response = client.chat.completions.create(model=str(tiny_causal_lm_dir), messages=messages,
                                                  max_tokens=MAX_TOKENS, temperature=0)  # fmt: skip
        return response.choices[0].message.content

    with ThreadPoolExecutor(max_workers=len(PROMPTS)) as pool:
        replies = list(pool.map(ask, PROMPTS))
    expected = [local_greedy([{"role": "user", "content": prompt}]) for prompt in PROMPTS]
    assert len(set(expected)) == len(PROMPTS)  # the prompts get different replies: each is checked for itself
    assert replies == expected


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "not_a_field": 1}, "not_a_field"),
    ],
)
def test_malformed_request_gets_4xx_with_message(server, body, named):
    response = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert named in response.json()["detail"]
