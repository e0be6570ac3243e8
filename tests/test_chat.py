"""`scratchlm-chat` driven through stdin: the streamed replies equal non-streamed `generate` with the same seed,
the conversation goes through the chat template (and `/clear` starts a new one), and a base model gets plain
continuation with a note."""

from __future__ import annotations

import io
import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

from scratchlm.inference.chat import main as chat_main

MAX_NEW_TOKENS = 8


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_causal_lm_dir):
    return (AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir).eval(),
            AutoTokenizer.from_pretrained(tiny_causal_lm_dir))


def _generate(model, tokenizer, ids, **options) -> str:
    with torch.inference_mode():
        output = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS, **options)
    return tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)


def _chat_reply(model, tokenizer, messages, **options) -> str:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    return _generate(model, tokenizer, ids, **options)


def _run_chat(monkeypatch, capsys, argv, lines):
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{line}\n" for line in lines)))
    chat_main(argv)
    return capsys.readouterr()


def test_streamed_conversation_equals_generate_and_clear_starts_over(
    tiny_causal_lm_dir, model_and_tokenizer, monkeypatch, capsys
):
    model, tokenizer = model_and_tokenizer
    system = {"role": "system", "content": "Be brief."}
    first, second, third = "hello, how are you?", "春风又绿江南岸", "Numbers like 2019"
    argv = [str(tiny_causal_lm_dir), "--system_prompt", system["content"], "--max_new_tokens", str(MAX_NEW_TOKENS)]
    out = _run_chat(monkeypatch, capsys, argv, [first, second, "/clear", third, "/exit", "never read"])

    reply1 = _chat_reply(model, tokenizer, [system, {"role": "user", "content": first}], do_sample=False)
    history = [system, {"role": "user", "content": first}, {"role": "assistant", "content": reply1},
               {"role": "user", "content": second}]
    reply2 = _chat_reply(model, tokenizer, history, do_sample=False)
    reply3 = _chat_reply(model, tokenizer, [system, {"role": "user", "content": third}], do_sample=False)
    assert len({reply1, reply2, reply3}) == 3  # different replies: the history and /clear are really checked
    assert out.out == f"{reply1}\n{reply2}\n{reply3}\n"
    assert "[new conversation]" in out.err and "not instruction-tuned" not in out.err


def test_sampled_reply_equals_generate_with_the_same_seed(tiny_causal_lm_dir, model_and_tokenizer, monkeypatch, capsys):
    model, tokenizer = model_and_tokenizer
    options = {"temperature": 0.8, "top_p": 0.95, "top_k": 20}
    argv = [str(tiny_causal_lm_dir), "--do_sample", "true", "--seed", "7", "--max_new_tokens", str(MAX_NEW_TOKENS)]
    argv += [f"--{name}={value}" for name, value in options.items()]
    out = _run_chat(monkeypatch, capsys, argv, ["tell me a story"])

    set_seed(7)
    expected = _chat_reply(model, tokenizer, [{"role": "user", "content": "tell me a story"}], do_sample=True, **options)
    assert out.out == f"{expected}\n"


def test_base_model_continues_text_with_a_note(tiny_causal_lm_dir, model_and_tokenizer, tmp_path, monkeypatch, capsys):
    model, tokenizer = model_and_tokenizer
    base_dir = tmp_path / "base"
    shutil.copytree(tiny_causal_lm_dir, base_dir)
    (base_dir / "scratchlm_run.json").write_text(json.dumps({"kind": "pretraining"}))
    out = _run_chat(monkeypatch, capsys, [str(base_dir), "--max_new_tokens", str(MAX_NEW_TOKENS)], ["Once upon"])

    expected = _generate(model, tokenizer, tokenizer("Once upon", return_tensors="pt").input_ids, do_sample=False)
    assert out.out == f"{expected}\n"
    assert "not instruction-tuned" in out.err


def test_the_model_is_named_bare_or_by_model_name_or_path_and_the_old_model_dir_still_works(
    tiny_causal_lm_dir, model_and_tokenizer, monkeypatch, capsys, caplog
):
    model, tokenizer = model_and_tokenizer
    expected = _chat_reply(model, tokenizer, [{"role": "user", "content": "hello"}], do_sample=False) + "\n"
    options = ["--max_new_tokens", str(MAX_NEW_TOKENS)]
    for argv in ([str(tiny_causal_lm_dir), *options], ["--model_name_or_path", str(tiny_causal_lm_dir), *options]):
        assert _run_chat(monkeypatch, capsys, argv, ["hello"]).out == expected
    assert "deprecated" not in caplog.text
    with caplog.at_level("WARNING", logger="scratchlm.cli"):
        out = _run_chat(monkeypatch, capsys, ["--model_dir", str(tiny_causal_lm_dir), *options], ["hello"])
    assert out.out == expected
    assert "--model_dir is deprecated and will be removed in the next release: use --model_name_or_path" in caplog.text


def test_bad_option_is_one_line_before_loading(tiny_causal_lm_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        chat_main([str(tiny_causal_lm_dir / "missing")])
    assert exit_info.value.code == 2
    assert "scratchlm-chat: error:" in capsys.readouterr().err


def _words(tokenizer, tokens: int) -> str:
    """A message of about `tokens` tokens."""
    sentence = "The quick brown fox jumps over the lazy dog. "
    per_sentence = len(tokenizer(sentence).input_ids)
    return sentence * (tokens // per_sentence + 1)


def test_over_long_message_is_refused_with_the_numbers_and_old_turns_are_dropped(
    tiny_causal_lm_dir, model_and_tokenizer, monkeypatch, capsys
):
    model, tokenizer = model_and_tokenizer
    context = model.config.max_position_embeddings
    budget = context - MAX_NEW_TOKENS
    first = _words(tokenizer, budget // 2)
    third = "Again: " + first
    too_long = _words(tokenizer, budget + 50)
    argv = [str(tiny_causal_lm_dir), "--max_new_tokens", str(MAX_NEW_TOKENS)]
    out = _run_chat(monkeypatch, capsys, argv, [first, too_long, third, "short"])

    reply1 = _chat_reply(model, tokenizer, [{"role": "user", "content": first}], do_sample=False)
    # The long message is neither answered nor kept; the third does not fit beside the first exchange, which goes.
    history = [{"role": "user", "content": third}]
    reply3 = _chat_reply(model, tokenizer, history, do_sample=False)
    history += [{"role": "assistant", "content": reply3}, {"role": "user", "content": "short"}]
    reply4 = _chat_reply(model, tokenizer, history, do_sample=False)
    assert out.out == f"{reply1}\n{reply3}\n{reply4}\n"
    size = tokenizer.apply_chat_template([{"role": "user", "content": too_long}], add_generation_prompt=True,
                                         return_dict=True)["input_ids"]
    refused = [line for line in out.err.splitlines() if line.startswith("[not sent")]
    assert len(refused) == 1
    assert f"{len(size)} tokens" in refused[0] and f"{budget}" in refused[0] and f"context of {context}" in refused[0]
    assert "oldest exchange" in out.err


def test_max_new_tokens_must_leave_room_for_the_prompt(tiny_causal_lm_dir, model_and_tokenizer, monkeypatch, capsys):
    context = model_and_tokenizer[0].config.max_position_embeddings
    monkeypatch.setattr("sys.stdin", io.StringIO("hi\n"))
    with pytest.raises(SystemExit) as exit_info:
        chat_main([str(tiny_causal_lm_dir), "--max_new_tokens", str(context)])
    assert exit_info.value.code == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert "--max_new_tokens" in out.err and f"context of {context} tokens" in out.err


def test_non_utf8_input_is_one_line_and_the_chat_goes_on(
    tiny_causal_lm_dir, model_and_tokenizer, monkeypatch, capsys
):
    model, tokenizer = model_and_tokenizer
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9 latin-1\nhello\n"), encoding="utf-8"))
    chat_main([str(tiny_causal_lm_dir), "--max_new_tokens", str(MAX_NEW_TOKENS)])
    out = capsys.readouterr()
    assert out.out == _chat_reply(model, tokenizer, [{"role": "user", "content": "hello"}], do_sample=False) + "\n"
    assert "[not sent: the message is not utf-8 text (byte 0xe9 at position 3)]" in out.err
    assert "Traceback" not in out.err
