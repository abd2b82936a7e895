"""CTC loss, greedy decoding and line metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.text import char_error_rate as tm_cer

from text_recognizer.lit_models.ctc import (
    character_error_rate,
    ctc_loss,
    greedy_decode,
    indices_to_text,
    labels_to_texts,
    line_accuracy,
)
from text_recognizer.metadata import BLANK_INDEX, CHAR_TO_LINE_INDEX, LINE_TOKENS, PAD_INDEX

A, B = CHAR_TO_LINE_INDEX["a"], CHAR_TO_LINE_INDEX["b"]


def scores(*steps: int, num_classes: int = len(LINE_TOKENS)) -> torch.Tensor:
    """(1, C, T) logits whose argmax at step t is steps[t]."""
    logits = torch.zeros(1, num_classes, len(steps))
    logits[0, list(steps), range(len(steps))] = 5.0
    return logits


def test_greedy_collapses_repeats_and_drops_blanks():
    decoded = greedy_decode(scores(A, A, BLANK_INDEX, A, B, B))
    assert decoded == [[A, A, B]]
    assert indices_to_text(decoded[0]) == "aab"


def test_greedy_all_blank_and_batch_rows_independent():
    logits = torch.cat([scores(BLANK_INDEX, BLANK_INDEX, BLANK_INDEX), scores(B, BLANK_INDEX, B)])
    assert greedy_decode(logits) == [[], [B, B]]
    assert indices_to_text([]) == ""


def test_greedy_repeat_across_rows_boundary_not_collapsed():
    """Row 1 starting with the token row 0 ended with must keep it (no leakage between rows)."""
    logits = torch.cat([scores(BLANK_INDEX, A), scores(A, BLANK_INDEX)])
    assert greedy_decode(logits) == [[A], [A]]


def test_greedy_with_lengths_equals_each_line_decoded_alone():
    """A cropped batch's shorter lines end before T: their steps past the length must not reach the text."""
    torch.manual_seed(0)
    logits = torch.randn(6, len(LINE_TOKENS), 20)
    logits[:, BLANK_INDEX] -= 1.0  # some blanks, mostly characters
    lengths = torch.tensor([20, 1, 7, 13, 20, 4])
    decoded = greedy_decode(logits, lengths)
    assert decoded == [greedy_decode(logits[i : i + 1, :, :n])[0] for i, n in enumerate(lengths.tolist())]
    assert decoded != greedy_decode(logits)  # the padding steps do hold characters here
    assert greedy_decode(logits, torch.full((6,), 20)) == greedy_decode(logits)


def test_indices_to_text_skips_special_tokens():
    assert indices_to_text([A, PAD_INDEX, BLANK_INDEX, CHAR_TO_LINE_INDEX[" "], B]) == "a b"


def test_labels_to_texts_cuts_padding():
    labels = torch.tensor([[A, B, PAD_INDEX, PAD_INDEX], [B, PAD_INDEX, PAD_INDEX, PAD_INDEX]])
    assert labels_to_texts(labels, torch.tensor([2, 1])) == ["ab", "b"]


def test_ctc_loss_fp32_under_bf16_and_matches_reference():
    torch.manual_seed(0)
    logits = torch.randn(3, len(LINE_TOKENS), 20)
    targets = torch.tensor([[A, B, A], [B, PAD_INDEX, PAD_INDEX], [A, A, PAD_INDEX]])
    lengths = torch.tensor([3, 1, 2])
    loss32 = ctc_loss(logits, targets, lengths)
    loss_bf16 = ctc_loss(logits.bfloat16(), targets, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_autocast = ctc_loss(logits.bfloat16(), targets, lengths)
    for loss in (loss32, loss_bf16, loss_autocast):
        assert loss.dtype == torch.float32
        assert torch.isfinite(loss)
    reference = torch.nn.CTCLoss(blank=0)(
        logits.log_softmax(1).permute(2, 0, 1), targets, torch.full((3,), 20), lengths
    )
    torch.testing.assert_close(loss32, reference)
    torch.testing.assert_close(loss_bf16, loss32, rtol=0.05, atol=0.05)


def test_ctc_loss_ignores_padding_values():
    """Whatever sits past target_lengths must not change the loss."""
    logits = torch.randn(2, len(LINE_TOKENS), 12)
    lengths = torch.tensor([2, 1])
    t1 = torch.tensor([[A, B, PAD_INDEX], [B, PAD_INDEX, PAD_INDEX]])
    t2 = torch.tensor([[A, B, A], [B, A, B]])
    torch.testing.assert_close(ctc_loss(logits, t1, lengths), ctc_loss(logits, t2, lengths))


def test_ctc_loss_low_for_matching_scores_and_gradients_flow():
    targets = torch.tensor([[A, A, B]])
    good = scores(A, BLANK_INDEX, A, B, B).mul(4).requires_grad_()
    bad = scores(B, B, B, B, B).mul(4)
    lengths = torch.tensor([3])
    loss_good = ctc_loss(good, targets, lengths)
    assert loss_good < ctc_loss(bad, targets, lengths)
    loss_good.backward()
    assert good.grad is not None and torch.isfinite(good.grad).all()


def test_ctc_loss_impossible_alignment_is_zeroed_not_inf():
    loss = ctc_loss(torch.randn(1, len(LINE_TOKENS), 2), torch.tensor([[A, A, B]]), torch.tensor([3]))
    assert math.isfinite(loss.item())


def test_edit_distance():
    assert character_error_rate(["abed"], ["abcd"]) == pytest.approx(1 / 4)
    assert character_error_rate([""], ["abc"]) == pytest.approx(3 / 3)
    assert character_error_rate(["kitten"], ["sitting"]) == pytest.approx(3 / 7)
    assert character_error_rate(["sitting"], ["kitten"]) == pytest.approx(3 / 6)
    assert character_error_rate(["ab", ""], ["", ""]) == 2.0  # no reference characters: the insertions


def test_cer_known_strings_and_corpus_level():
    assert character_error_rate(["abed"], ["abcd"]) == pytest.approx(0.25)
    # corpus level: (1 + 1) / (1 + 4), not the mean of per-line rates (1 + 0.25) / 2
    assert character_error_rate(["a", "abed"], ["b", "abcd"]) == pytest.approx(0.4)
    assert character_error_rate(["ab", "x"], ["abcd", "xyzwvu"]) == pytest.approx(0.7)
    assert character_error_rate(["same"], ["same"]) == 0.0


def test_cer_agrees_with_torchmetrics():
    preds = ["hello world", "", "abc", "the quick brwn fox"]
    targets = ["helo world", "abc", "abc", "the quick brown fox"]
    assert character_error_rate(preds, targets) == pytest.approx(tm_cer(preds, targets).item())


def test_line_accuracy_and_length_checks():
    assert line_accuracy(["ab", "c", "d "], ["ab", "c", "d"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 predictions for 1 targets"):
        line_accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no lines"):
        character_error_rate([], [])


def test_padding_never_counted_in_metrics():
    labels = torch.tensor([[A, B, PAD_INDEX, PAD_INDEX]])
    targets = labels_to_texts(labels, torch.tensor([2]))
    preds = [indices_to_text(row) for row in greedy_decode(scores(A, BLANK_INDEX, B))]
    assert character_error_rate(preds, targets) == 0.0
    assert line_accuracy(preds, targets) == 1.0
