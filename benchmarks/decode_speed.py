"""Lines per second of CTC decoding on CPU: greedy, beam search, beam search with a character LM.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/decode_speed.py --threads 1 [--beam 16] [--order 6] [--json F]
        [--against flashlight]

Logits are (lines, 65, 109), as LineCNN emits them for 32-character lines. "flat" logits are
standard normal (every class plausible at every step: the worst case for the beam); "peaky"
ones add 8 to one class per step, blank half the time, like a trained network. The LM is fitted
on Brown phrases when --brown exists, else on random texts. Best of --repeats (shared machines).
The search is numpy on the CPU whatever --device says.

--against flashlight also runs flashlight-text's LexiconFreeDecoder (C++, one line per call) with its
native KenLM on the same logits: the CharLM is written out as an ARPA file (its probabilities exactly,
checked here against line_log_probs), and a second table gives both decoders' lines/s and the CER
between their readings, on the same logits and on a third kind, "text": noisy logits that spell
phrases drawn like the LM's (another seed, not held out), so both are also scored against the truth.
flashlight-text is no dependency of the project: `pip install flashlight-text` first (0.0.7 has
KenLM in its Linux wheel). KenLM needs --order 2 or more.
"""

from __future__ import annotations

import math
import tempfile
import timeit
from functools import partial
from pathlib import Path

import numpy as np
import torch
from machine import arguments, random_texts, report, start

from text_recognizer.data.sentences import load_brown_text, sample_phrases
from text_recognizer.lit_models.ctc import character_error_rate, greedy_decode, indices_to_text
from text_recognizer.metadata import BLANK_INDEX, LINE_TOKENS, PAD_INDEX
from text_recognizer.reading.char_lm import CharLM
from text_recognizer.reading.decoding import beam_decode

STEPS = 109
BROWN = Path(__file__).resolve().parents[2] / "shared/datasets/nltk_data/corpora/brown.zip"


def lm_text(brown: Path, phrases: int, rng: np.random.Generator) -> tuple[str, str]:
    """(training text, its source) for the LM: Brown phrases if the zip is there."""
    if not brown.exists():
        return "\n".join(random_texts(rng, phrases, 32)), f"{phrases} random texts"
    return "\n".join(sample_phrases(load_brown_text(brown), phrases, 32, rng)), f"{phrases} Brown phrases"


def logits_for(kind: str, lines: int, rng: np.random.Generator) -> torch.Tensor:
    logits = rng.standard_normal((lines, len(LINE_TOKENS), STEPS)).astype(np.float32)
    if kind == "peaky":
        top = np.where(rng.random((lines, STEPS)) < 0.5, BLANK_INDEX, rng.integers(2, len(LINE_TOKENS), (lines, STEPS)))
        np.put_along_axis(logits, top[:, None, :], 8.0, axis=1)
    return torch.from_numpy(logits)


def text_logits(texts: list[str], rng: np.random.Generator) -> torch.Tensor:
    """(lines, 65, STEPS) logits that spell `texts` (a blank after every character, 1 or 2 frames each) under
    noise (sd 1.5 against peaks of 7: greedy reads ~14 % of the characters wrong), for the LM to fix."""
    logits = rng.normal(scale=1.5, size=(len(texts), len(LINE_TOKENS), STEPS)).astype(np.float32)
    for i, text in enumerate(texts):
        frames = [c for ch in text for c in [LINE_TOKENS.index(ch)] * rng.integers(1, 3) + [BLANK_INDEX]]
        assert len(frames) <= STEPS, "texts of at most 32 characters fit in 109 steps"
        logits[i, BLANK_INDEX, len(frames) :] += 7.0
        logits[i, frames, np.arange(len(frames))] += 7.0
    return torch.from_numpy(logits)


def arpa_text(lm: CharLM, names: list[str]) -> str:
    """The model as an ARPA back-off file whose words are `names` (character symbol s: names[s - 1]).

    Interpolated Kneser-Ney is a back-off model: P(w | h) = term(h, w) + gamma(h) P(w | h[1:]), term 0 for an
    unseen w. So each seen n-gram is written with its interpolated probability, each seen context with its
    gamma. CharLM pads a line's start with order-1 start symbols where KenLM keeps one <s>: "<s> x.. w" gets
    the probability after the full padding, and "<s> x.." the product of the gammas of its padded contexts (a
    w unseen after "<s> x.." is unseen after every longer padding, whose grams are those of the shortest)."""
    base, key_base, n_out = lm.base, lm.key_base, lm.n_out
    words = np.array(["<s>", *names, "</s>"], dtype=object)  # by symbol: 0 start, n_out end

    def gamma(k: int, codes: np.ndarray) -> np.ndarray:
        """Back-off weight of the length-k contexts `codes`, 1 where unseen (or k is the top)."""
        if k >= lm.order:
            return np.ones(len(codes))
        level = lm._orders[k]
        row = np.searchsorted(level.contexts, codes).clip(max=len(level.contexts) - 1)
        return np.where(level.contexts[row] == codes, level.gamma[row], 1.0)

    symbols = np.arange(1, n_out + 1)
    unigram_bow = np.where(symbols < n_out, gamma(1, symbols % n_out), 1.0)
    start_bow = np.prod([gamma(j, np.zeros(1, np.int64))[0] for j in range(1, lm.order)])
    sections = [_arpa_lines(np.log10(lm._dense[0][0]), words[symbols, None], np.log10(unigram_bow), lm.order == 1)]
    sections[0] += [f"-99\t<s>\t{math.log10(start_bow):.7g}", "-100\t<unk>"]
    prob = lm._dense[0][0][lm.keys[0] % key_base - 1]  # interpolated P_k(w | h) of each gram of lm.keys[k]
    for k in range(1, lm.order):
        ctx, out = np.divmod(lm.keys[k], key_base)
        lower = prob[np.searchsorted(lm.keys[k - 1], (ctx % base ** (k - 1)) * key_base + out)]
        prob = lm._orders[k].terms + lm._orders[k].gamma[np.searchsorted(lm._orders[k].contexts, ctx)] * lower
        digits = np.stack([ctx // base**j % base for j in range(k - 1, -1, -1)], axis=1)  # oldest first
        plain = (digits > 0).all(axis=1)  # no start symbol in the context
        padded = (digits[:, 0] == 0) & ((digits[:, 1] > 0) if k > 1 else True)  # one, the oldest
        p = np.where(plain, prob, 0.0)
        p[padded] = lm.next_probs(ctx[padded])[np.arange(padded.sum()), out[padded] - 1]
        grown = ctx * base + out % n_out  # the context these grams make one order up (unused for the end)
        bow = np.where(plain, gamma(k + 1, grown), 1.0)
        for j in range(k + 1, lm.order):
            bow = np.where(padded, bow * gamma(j, grown), bow)
        bow[out == n_out] = 1.0
        keep = plain | padded
        grams = words[np.concatenate([digits, out[:, None]], axis=1)[keep]]
        sections.append(_arpa_lines(np.log10(p[keep]), grams, np.log10(bow[keep]), k + 1 == lm.order))
    head = ["\\data\\", *(f"ngram {k + 1}={len(lines)}" for k, lines in enumerate(sections))]
    body = [f"\n\\{k + 1}-grams:\n" + "\n".join(lines) for k, lines in enumerate(sections)]
    return "\n".join(head) + "\n" + "\n".join(body) + "\n\n\\end\\\n"


def _arpa_lines(log10_p: np.ndarray, grams: np.ndarray, log10_bow: np.ndarray, top: bool) -> list[str]:
    """ARPA lines "log10 p<TAB>w1 w2 ..[<TAB>log10 bow]" (no back-off weight at the top order)."""
    out = []
    for lp, gram, bow in zip(log10_p.tolist(), grams.tolist(), log10_bow.tolist(), strict=True):
        out.append(f"{lp:.7g}\t{' '.join(gram)}" if top else f"{lp:.7g}\t{' '.join(gram)}\t{bow:.7g}")
    return out


def seconds(fn, repeats: int = 1) -> float:
    """Fewest seconds over `repeats` calls (the minimum is the least disturbed by other jobs)."""
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def flashlight_decoder(lm: CharLM, folder: Path, beam: int, top_k: int, lm_weight: float):
    """(decode: logits -> labels per line, the KenLM): flashlight-text's LexiconFreeDecoder with KenLM on
    `lm` written as ARPA, settings as beam_search's (its token beam counts the blank, and its LM scores are
    log10, hence the weight times ln 10)."""
    try:
        from flashlight.lib.text.decoder import CriterionType, LexiconFreeDecoder, LexiconFreeDecoderOptions
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary
    except ImportError as error:
        raise SystemExit(f"--against flashlight: pip install flashlight-text (with KenLM) first ({error})") from None
    if lm.order < 2:
        raise SystemExit("--against flashlight: KenLM needs --order 2 or more")
    names = [f"t{i}" for i in range(len(LINE_TOKENS))]  # ARPA words hold no spaces
    path = folder / "char_lm.arpa"
    path.write_text(arpa_text(lm, [names[LINE_TOKENS.index(c)] for c in lm.chars]))
    kenlm = KenLM(str(path), Dictionary(names))
    options = LexiconFreeDecoderOptions(
        beam_size=beam,
        beam_size_token=top_k + 1,
        beam_threshold=1e3,
        lm_weight=lm_weight * math.log(10),
        sil_score=0.0,
        log_add=True,
        criterion_type=CriterionType.CTC,
    )
    decoder = LexiconFreeDecoder(options, kenlm, BLANK_INDEX, BLANK_INDEX, [])

    def decode(logits: torch.Tensor) -> list[list[int]]:
        log_probs = torch.log_softmax(logits.float(), dim=1)
        log_probs[:, PAD_INDEX] = -1e9  # never emitted, as in beam_search
        labels = []
        for line in log_probs.permute(0, 2, 1).contiguous():  # (T, C) rows, one line per call
            tokens = decoder.decode(line.data_ptr(), line.shape[0], line.shape[1])[0].tokens
            labels.append(
                [
                    t
                    for t, prev in zip(tokens, [-1, *tokens[:-1]], strict=True)
                    if t != prev and t != BLANK_INDEX and t >= 0
                ]
            )
        return labels

    return decode, kenlm


def kenlm_error(kenlm, lm: CharLM, lines: list[str]) -> float:
    """Largest |log P(line)| difference (nats) between KenLM on the ARPA export and the CharLM itself."""
    worst = 0.0
    for line, expected in zip(lines, lm.line_log_probs("\n".join(lines)).tolist(), strict=True):
        state, total = kenlm.start(False), 0.0
        for ch in line:
            state, score = kenlm.score(state, LINE_TOKENS.index(ch))
            total += score
        total += kenlm.finish(state)[1]
        worst = max(worst, abs(total * math.log(10) - expected))
    return worst


def against_flashlight(args, lm: CharLM, logits: dict[str, torch.Tensor], texts: list[str], repeats: int) -> dict:
    """lines/s of flashlight-text and of beam_search with the same LM on the same logits, and the CER
    between their readings (and, on the "text" logits, against the truth)."""
    with tempfile.TemporaryDirectory() as folder:
        decode, kenlm = flashlight_decoder(lm, Path(folder), args.beam, 16, args.lm_weight)
    results: dict = {"kenlm_max_error_nats": kenlm_error(kenlm, lm, texts[:200])}
    print(f"\n# ARPA export: KenLM and CharLM line log-probs differ by <= {results['kenlm_max_error_nats']:.1e} nats")
    print("| logits | ours: beam + LM | flashlight + KenLM | CER flashlight vs ours | CER vs truth: greedy, ours, fl |")
    print("|---|---|---|---|---|")
    for kind, x in logits.items():
        ours = partial(beam_decode, x, beam_width=args.beam, lm=lm, lm_weight=args.lm_weight)
        read = {"greedy": greedy_decode(x), "ours": ours(), "flashlight": decode(x)}
        read = {name: [indices_to_text(labels) for labels in found] for name, found in read.items()}
        row = {"ours": len(x) / seconds(ours, repeats), "flashlight": len(x) / seconds(partial(decode, x), repeats)}
        row["cer_vs_ours"] = character_error_rate(read["flashlight"], read["ours"])
        truth = "n/a"
        if kind == "text":
            row.update({f"cer_{name}": character_error_rate(found, texts[: len(x)]) for name, found in read.items()})
            truth = f"{row['cer_greedy']:.4f}, {row['cer_ours']:.4f}, {row['cer_flashlight']:.4f}"
        print(f"| {kind} | {row['ours']:,.0f} | {row['flashlight']:,.0f} | {row['cer_vs_ours']:.4f} | {truth} |")
        results[kind] = row
    return results


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__file__, __doc__)
    for flag, default in [("--lines", 256), ("--beam", 16), ("--order", 6), ("--repeats", 3), ("--lm-weight", 0.5)]:
        parser.add_argument(f"{flag}", type=type(default), default=default)
    parser.add_argument("--brown", type=Path, default=BROWN)
    parser.add_argument("--against", choices=["flashlight"], help="also time flashlight-text's KenLM decoder")
    args, _, head = start(parser, argv)
    lines, repeats, phrases = (16, 1, 2_000) if args.quick else (args.lines, args.repeats, 200_000)
    rng = np.random.default_rng(0)
    text, source = lm_text(args.brown, phrases, rng)
    lms: list[CharLM] = []  # filled by the timed fit
    results = {"lm": {"order": args.order, "text": source, "mb": len(text) / 1e6}, "sizes": {"lines": lines}}
    results["lm"]["fit_s"] = seconds(lambda: lms.append(CharLM.fit(text, args.order)))
    print(f"# LM: order {args.order} on {source}, {len(text) / 1e6:.1f} MB, fitted in {results['lm']['fit_s']:.2f} s")
    print(f"\n{lines} lines x {len(LINE_TOKENS)} x {STEPS}, beam {args.beam}, best of {repeats}; lines/s")
    print("| logits | greedy | beam | beam + LM |\n|---|---|---|---|")
    logits_of = {}
    for kind in ("flat", "peaky"):
        logits = logits_of[kind] = logits_for(kind, lines, rng)
        beam = partial(beam_decode, logits, beam_width=args.beam)
        runs = {"greedy": partial(greedy_decode, logits), "beam": beam}
        runs["beam_lm"] = partial(beam, lm=lms[0], lm_weight=args.lm_weight)
        results[kind] = {name: lines / seconds(fn, repeats) for name, fn in runs.items()}
        print(f"| {kind} | {' | '.join(f'{v:,.0f}' for v in results[kind].values())} |")
    if args.against == "flashlight":
        texts, _ = lm_text(args.brown, lines, np.random.default_rng(1))
        logits_of["text"] = text_logits(texts.split("\n"), np.random.default_rng(2))
        results["flashlight"] = against_flashlight(args, lms[0], logits_of, texts.split("\n"), repeats)
    report(head, results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
