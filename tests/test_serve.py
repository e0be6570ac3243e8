"""`scratchlm-serve`: the OpenAI API over loopback, checked with the official `openai` client and with `httpx`.

Greedy replies equal local `generate`, streamed or not, for chat and completions; three concurrent clients each
get their own reply; stop sequences, seeds and the context limit behave as OpenAI documents; a field the server
does not serve is a 400 naming it; a client that leaves mid-stream stops its generation; a base model answers
completions and refuses chat.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig  # noqa: E402

from scratchlm.inference.serve import ServeArguments, Server, StopText, main  # noqa: E402
from scratchlm.model_cards.run_record import RunRecord  # noqa: E402

MAX_TOKENS = 12
PROMPTS = ["hello, how are you?", "春风又绿江南岸", "Numbers like 2019"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tiny_causal_lm_dir, tmp_path_factory):
    """The tiny model with no end-of-sequence token in its generation config: a random model may emit eos at
    any step, and the tests need replies that run to the length they ask for."""
    directory = tmp_path_factory.mktemp("served") / "tiny"
    shutil.copytree(tiny_causal_lm_dir, directory)
    config = GenerationConfig.from_pretrained(directory)
    GenerationConfig(bos_token_id=config.bos_token_id, pad_token_id=config.pad_token_id).save_pretrained(directory)
    return directory


def serve(model_dir) -> Server:
    return Server(ServeArguments(model_name_or_path=str(model_dir), port=free_port(), device="cpu")).start()


@pytest.fixture(scope="module")
def server(model_dir):
    running = serve(model_dir)
    yield running
    running.stop()
    assert not running.thread.is_alive(), "the server thread is still running after stop()"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=120, max_retries=0)


@pytest.fixture(scope="module")
def local(model_dir):
    """Greedy text from the model loaded the ordinary way: for chat messages or for a plain prompt."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()

    def generate(messages=None, prompt=None, max_new_tokens=MAX_TOKENS) -> str:
        if messages is not None:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)["input_ids"]
        else:
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            output = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                    max_new_tokens=max_new_tokens)
        return tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)

    generate.tokenizer = tokenizer
    return generate


def stream_events(url: str, body: dict) -> list[dict]:
    with httpx.stream("POST", url, json=body, timeout=120) as response:
        assert response.status_code == 200, response.read()
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[len("data: ") :]) for line in lines[:-1]]


def test_greedy_chat_reply_equals_local_generate_streamed_or_not(server, client, local, model_dir):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPTS[0]}]
    expected = local(messages)
    assert expected, "the tiny model generated nothing: the comparison would be empty"

    response = client.chat.completions.create(model=str(model_dir), messages=messages, max_tokens=MAX_TOKENS,
                                              temperature=0)
    assert response.choices[0].message.content == expected
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == MAX_TOKENS
    prompt_ids = local.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    assert response.usage.prompt_tokens == len(prompt_ids["input_ids"])

    stream = client.chat.completions.create(model=str(model_dir), messages=messages, max_tokens=MAX_TOKENS,
                                            temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]
    assert len([piece for piece in pieces if piece]) >= 2  # streamed in pieces (at word ends), not in one event
    assert "".join(pieces) == expected
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == MAX_TOKENS


def test_greedy_completion_equals_local_generate_streamed_or_not(server, local):
    expected = local(prompt="The quick brown fox")
    body = {"prompt": "The quick brown fox", "max_tokens": MAX_TOKENS, "temperature": 0}
    response = httpx.post(f"{server.url}/v1/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["text"] == expected
    assert response.json()["object"] == "text_completion"

    events = stream_events(f"{server.url}/v1/completions", {**body, "stream": True})
    assert "".join(event["choices"][0]["text"] for event in events) == expected
    assert events[-1]["choices"][0]["finish_reason"] == "length"


def test_three_concurrent_clients_each_get_their_own_reply(server, client, local, model_dir):
    def ask(prompt):
        response = client.chat.completions.create(model=str(model_dir), messages=[{"role": "user", "content": prompt}],
                                                  max_tokens=MAX_TOKENS, temperature=0)
        return response.choices[0].message.content

    with ThreadPoolExecutor(max_workers=len(PROMPTS)) as pool:
        replies = list(pool.map(ask, PROMPTS))
    expected = [local([{"role": "user", "content": prompt}]) for prompt in PROMPTS]
    assert len(set(expected)) == len(PROMPTS)  # the prompts get different replies: each is checked for itself
    assert replies == expected


def test_a_stop_sequence_ends_the_reply_before_it(server, client, local, model_dir):
    messages = [{"role": "user", "content": PROMPTS[2]}]
    full = local(messages, max_new_tokens=24)
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop.strip(), f"pick another prompt: {full!r} has no usable middle"
    expected = full[: full.index(stop)]
    for stream in (False, True):
        response = client.chat.completions.create(model=str(model_dir), messages=messages, max_tokens=24,
                                                  temperature=0, stop=[stop], stream=stream)
        if stream:
            chunks = [chunk for chunk in response if chunk.choices]
            text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
            finish = chunks[-1].choices[0].finish_reason
        else:
            text, finish = response.choices[0].message.content, response.choices[0].finish_reason
        assert (text, finish) == (expected, "stop")


def test_stop_text_never_sends_part_of_a_stop_sequence():
    stop = StopText(["END"])
    sent = [stop.feed(piece) for piece in ["abc E", "N", "x E", "ND more"]]
    assert "".join(sent) == "abc ENx " and stop.stopped
    assert sent[:2] == ["abc", " "]  # the last two characters ("E", then "EN") wait until they cannot start "END"


def test_the_same_seed_samples_the_same_reply(server, client, model_dir):
    def sample(seed):
        return client.chat.completions.create(
            model=str(model_dir), messages=[{"role": "user", "content": PROMPTS[1]}], max_tokens=MAX_TOKENS,
            temperature=1.5, top_p=1.0, seed=seed).choices[0].message.content

    first, again, other = sample(1), sample(1), sample(2)
    assert first == again
    assert first != other


def test_a_prompt_past_the_context_is_a_400_with_the_numbers(server, client, model_dir):
    long_prompt = "hello " * 600  # the tiny model's context is 512 tokens
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model=str(model_dir), prompt=long_prompt, max_tokens=4)
    message = error.value.body["message"]
    assert "512" in message and "4 in the completion" in message
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model=str(model_dir), prompt="hello", max_tokens=600)
    assert "600 in the completion" in error.value.body["message"]
    assert error.value.body["param"] == "max_tokens"


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        ("chat/completions", {"messages": "hello"}, "messages"),
        ("chat/completions", {"messages": []}, "messages"),
        ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}, "max_tokens"),
        ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "not_a_field": 1}, "not_a_field"),
        ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
        ("chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                              "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "logprobs": True}, "logprobs"),
        ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]},
         "stop"),
        ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o"}, "model"),
        ("completions", {"prompt": ["one", "two"]}, "prompt"),
        ("completions", {"prompt": "hi", "echo": True}, "echo"),
        ("completions", {"prompt": "hi", "temperature": -1}, "temperature"),
    ],
)
def test_an_unserved_or_malformed_field_is_a_4xx_naming_it(server, path, body, named):
    response = httpx.post(f"{server.url}/v1/{path}", json=body, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert named in error["message"]
    assert error["param"] == named


def test_models_and_health(server, model_dir):
    assert httpx.get(f"{server.url}/health", timeout=10).json() == {"status": "ok"}
    models = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused").models.list()
    assert [model.id for model in models.data] == [str(model_dir)]


def test_a_client_that_leaves_mid_stream_stops_its_generation(server, client, model_dir):
    engine = server.engine
    body = {"messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 400, "temperature": 0,
            "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as response:
        received = 0
        for line in response.iter_lines():
            received += line.startswith("data: ")
            if received == 4:
                break  # leaving the block closes the connection mid-reply
    deadline = time.monotonic() + 60
    while not (engine.history and engine.history[-1].finish_reason == "cancelled"):
        assert time.monotonic() < deadline, f"the generation went on: {list(engine.history)[-1:]}"
        time.sleep(0.05)
    assert engine.history[-1].completion_tokens < 200  # stopped long before the 400 tokens asked for
    # and the server goes on serving
    reply = client.chat.completions.create(model=str(model_dir), messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=2, temperature=0)
    assert reply.usage.completion_tokens == 2


def test_a_base_model_answers_completions_and_refuses_chat(model_dir, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(model_dir, base)
    RunRecord(kind="pretraining").save(base)  # what scratchlm-pretrain leaves beside a base model
    running = serve(base)
    try:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(model=str(base), messages=[{"role": "user", "content": "hi"}])
        assert "base model" in error.value.body["message"] and "/v1/completions" in error.value.body["message"]
        text = client.completions.create(model=str(base), prompt="The quick", max_tokens=3, temperature=0)
        assert text.usage.completion_tokens == 3
    finally:
        running.stop()


def test_a_directory_without_a_model_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scratchlm-serve: error:") and "missing" in error and "\n" not in error
