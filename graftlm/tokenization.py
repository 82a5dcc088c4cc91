"""A dependency-free byte-level tokenizer with the small part of the HF tokenizer API graftlm uses.

Ids: 0 = pad, 1 = bos, 2 = eos, 3 + b for byte b. Lossless for any text (UTF-8 bytes), so it is
the tokenizer of the tests and of SentenceVAE experiments that should not depend on a BPE.
"""

from __future__ import annotations

from typing import Iterable

OFFSET = 3


class ByteTokenizer:
    pad_token_id = 0
    bos_token_id = 1
    eos_token_id = 2
    vocab_size = 256 + OFFSET

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"ByteTokenizer.encode expects a str, got {type(text).__name__}")
        ids = [b + OFFSET for b in text.encode("utf-8")]
        return [self.bos_token_id, *ids, self.eos_token_id] if add_special_tokens else ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        data = bytearray()
        for i in ids:
            i = int(i)
            if i >= OFFSET:
                if i >= self.vocab_size:
                    raise ValueError(f"token id {i} is outside the byte vocabulary (size {self.vocab_size})")
                data.append(i - OFFSET)
            elif not skip_special_tokens:
                raise ValueError(f"special token id {i} cannot be decoded to text")
        return data.decode("utf-8", errors="replace")

    def __call__(self, text: str | list[str], add_special_tokens: bool = False, **_: object) -> dict:
        if isinstance(text, str):
            return {"input_ids": self.encode(text, add_special_tokens)}
        return {"input_ids": [self.encode(t, add_special_tokens) for t in text]}
