"""A tiny CLIP tokenizer for the `tiny` preset.

The `tiny` preset uses the same `CLIPTokenizer` class as `sd15`, so it needs real CLIP tokenizer files (`vocab.json`
and `merges.txt`, byte-level BPE with an `</w>` end-of-word marker). The real vocabulary has 49,408 entries, which
would make the tiny text encoder's embedding table its largest part; Arc2Face only ever encodes one fixed prompt and
the empty prompt, so a vocabulary of the 512 byte symbols plus merges spelling the prompt's words is enough. Any other
text still tokenises, one byte symbol at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77  # CLIP's context length; Arc2Face pads its prompt to it
DEFAULT_WORDS = ("photo", "of", "a", "id", "person")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable characters (BPE then never sees whitespace or control)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def build_tiny_tokenizer(folder, words=DEFAULT_WORDS) -> CLIPTokenizer:
    """Write a CLIP tokenizer whose vocabulary holds every byte plus one token per word in `words`; return it loaded.

    The vocabulary is laid out as CLIP's is: byte symbols, the same with `</w>`, one entry per merge, then the start
    and end tokens last (so the end token has the highest id, which CLIP's pooled output relies on).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]

    merges: list[tuple[str, str]] = []
    for word in words:
        chars = [bytes_to_unicode()[b] for b in word.lower().encode("utf-8")]
        if len(chars) < 2:
            continue  # a single symbol is already a token
        chars[-1] += "</w>"
        # Merge left to right: "p h" -> "ph", "ph o" -> "pho", ... so the whole word ends up one token.
        left = chars[0]
        for right in chars[1:]:
            if (left, right) not in merges:
                merges.append((left, right))
            left += right
    vocab += ["".join(pair) for pair in merges]
    vocab = list(dict.fromkeys(vocab)) + [BOS, EOS]

    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LENGTH, "do_lower_case": True, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return CLIPTokenizer.from_pretrained(folder)
