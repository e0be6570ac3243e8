"""`classifier_pooling`: the sequence classifier reads the last real token or the mean over the real tokens."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from scratchlm.modeling import ScratchLMForSequenceClassification

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def classifier(tiny_model):
    def build(pooling: str) -> ScratchLMForSequenceClassification:
        return tiny_model(ScratchLMForSequenceClassification, num_labels=2, classifier_pooling=pooling)

    return build


def test_mean_pooling_scores_the_mean_hidden_state_of_the_real_tokens_with_either_padding(classifier, random_ids):
    model = classifier("mean")
    text = random_ids(batch=1, length=6)
    pad, ones, zeros = torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 6, dtype=torch.long), torch.zeros(1, 3,
                                                                                                           dtype=torch.long)
    with torch.no_grad():
        expected = model.score(model.model(text).last_hidden_state.mean(1))
        alone = model(text).logits
        right = model(torch.cat([text, pad], 1), attention_mask=torch.cat([ones, zeros], 1)).logits
        left = model(torch.cat([pad, text], 1), attention_mask=torch.cat([zeros, ones], 1)).logits
        by_pad_id = model(torch.cat([text, pad], 1)).logits  # no mask: pad_token_id marks the padding
        last = classifier("last")(text).logits
    for logits in (alone, right, left, by_pad_id):
        assert torch.allclose(logits, expected, atol=1e-5)
    assert not torch.allclose(last, expected, atol=1e-3)  # the same weights pool differently


def test_pooling_is_saved_with_the_model_and_bad_values_are_refused(classifier, tiny_config, tmp_path):
    classifier("mean").save_pretrained(tmp_path)
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path).config.classifier_pooling == "mean"
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path, classifier_pooling="last").config \
        .classifier_pooling == "last"
    with pytest.raises(ValueError, match="classifier_pooling"):
        tiny_config(num_labels=2, classifier_pooling="max")


def test_finetune_classifier_pooling_flag_is_saved_with_the_classifier(tiny_causal_lm_dir, data_dir, tmp_path, capsys):
    from scratchlm.training.finetune import main

    lines = (data_dir / "sst2-sentences" / "stsa.binary.train").read_text(encoding="utf-8").splitlines()[:48]
    rows = [json.dumps({"text": line[2:].strip(), "label": int(line[0])}) for line in lines]
    (tmp_path / "train.jsonl").write_text("\n".join(rows[:32]) + "\n")
    (tmp_path / "dev.jsonl").write_text("\n".join(rows[32:]) + "\n")
    common = ["--model_name_or_path", str(tiny_causal_lm_dir), "--train_files", str(tmp_path / "train.jsonl"),
              "--validation_files", str(tmp_path / "dev.jsonl"), "--max_steps", "2", "--per_device_train_batch_size",
              "16", "--report_to", "none", "--save_strategy", "no", "--evaluate_before_training", "false"]
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--output_dir", str(tmp_path / "bad"), "--classifier_pooling", "max"])
    assert exit_info.value.code == 2 and "--classifier_pooling" in capsys.readouterr().err
    main([*common, "--output_dir", str(tmp_path / "mean"), "--classifier_pooling", "mean"])
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "mean").config.classifier_pooling == "mean"
