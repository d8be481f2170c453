"""PGVL's text side: CLIP's text tower with CoOp-style learnable context, and the prompt encoder.

* :class:`ContextTextEncoder`: open_clip's ``TextTransformer`` (the CLIP text tower, QuickGELU,
  causal mask) over ``context_length`` positions (13 in PGVL: the first 13 of CLIP's 77). The
  learnable context vectors are spliced in after each prompt's start token, so a prompt of
  ``L`` token slots (start, words, end, zero padding) with ``13 - L`` context vectors fills the
  13 positions; the output is ``ln_final`` at the end token (now ``argmax(ids) + #contexts``)
  times ``text_projection``. Its parameter names are those of the original
  (``token_embedding``, ``positional_embedding``, ``transformer.resblocks.{i}.{ln_1, attn.in_proj_*,
  attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}``, ``ln_final``, ``text_projection``), so CLIP
  weights and PGVL checkpoints load unchanged.
* :class:`PromptEncoder`: one CLIP residual block (no mask, no position embedding) and a final
  LayerNorm, mixing the K keypoint embeddings. ``positional_embedding`` and ``text_projection``
  exist only because released checkpoints hold them; the forward pass never reads them.
* :func:`tokenize`: CLIP's BPE (open_clip's bundled vocabulary; nothing is downloaded), start
  49406 and end 49407, zero padding, and an error (not truncation) when a prompt is too long.

Weights are never downloaded here: the towers are built with random initialisation and receive
CLIP's (or a PGVL checkpoint's) tensors through ``posecore.load_weights``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import LayerNorm, QuickGELU, TextTransformer, Transformer
from torch import nn

from posecore import ConfigError

__all__ = ["ContextTextEncoder", "PromptEncoder", "tokenize"]

_TOKENIZER: SimpleTokenizer | None = None


def tokenize(texts: Sequence[str], context_length: int) -> torch.Tensor:
    """CLIP token ids ``(len(texts), context_length)``: start, words, end, zeros.

    A prompt longer than ``context_length`` is an error, as in the original (which never truncates)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = SimpleTokenizer()
    start, end = _TOKENIZER.encoder["<start_of_text>"], _TOKENIZER.encoder["<end_of_text>"]
    ids = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        tokens = [start, *_TOKENIZER.encode(text), end]
        if len(tokens) > context_length:
            raise ConfigError(f"pgvl: prompt {text!r} needs {len(tokens)} tokens with start and end; "
                              f"context_length is {context_length}")
        ids[row, : len(tokens)] = torch.tensor(tokens)
    return ids


class ContextTextEncoder(TextTransformer):
    """CLIP's text tower whose prompts carry shared learnable context vectors after the start token.

    Args:
        context_length: positions of the tower (PGVL: 13).
        vocab_size, width, heads, layers: the tower (CLIP ViT-B/16: 49408, 512, 8, 12).
        embed_dim: width of ``text_projection``'s output.
    """

    def __init__(self, context_length: int = 13, vocab_size: int = 49408, width: int = 512, heads: int = 8,
                 layers: int = 12, embed_dim: int = 512) -> None:
        super().__init__(context_length=context_length, vocab_size=vocab_size, width=width, heads=heads,
                         layers=layers, output_dim=embed_dim, act_layer=QuickGELU)
        self.embed_dim = embed_dim

    def forward(self, tokens: torch.Tensor, contexts: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """tokens ``(K, L)`` ids, contexts ``(1, C, width)`` with ``L + C == context_length`` ->
        embeddings ``(K, embed_dim)``."""
        embedded = self.token_embedding(tokens)
        count = 0
        if contexts is not None:
            count = contexts.shape[1]
            shared = contexts.to(embedded.dtype).expand(tokens.shape[0], -1, -1)
            embedded = torch.cat([embedded[:, :1], shared, embedded[:, 1:]], dim=1)
        if embedded.shape[1] != self.context_length:
            raise ValueError(f"pgvl text encoder: {tokens.shape[1]} token slots + {count} contexts != "
                             f"context_length {self.context_length}")
        hidden = embedded + self.positional_embedding.to(embedded.dtype)
        hidden = self.transformer(hidden, attn_mask=self.attn_mask)
        hidden = self.ln_final(hidden)
        end = tokens.argmax(dim=-1) + count
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), end] @ self.text_projection


class PromptEncoder(nn.Module):
    """One unmasked CLIP residual block and a LayerNorm over the K prompt embeddings.

    Args:
        prompt_num: rows of the unused ``positional_embedding`` (the original config's
            ``prompt_num``; released OCHuman weights have 16 with K = 17).
        width, heads, layers: the block(s).
        embed_dim: columns of the unused ``text_projection``.
    """

    def __init__(self, prompt_num: int, width: int = 512, heads: int = 8, layers: int = 1, embed_dim: int = 512) -> None:
        super().__init__()
        self.transformer = Transformer(width=width, layers=layers, heads=heads, act_layer=QuickGELU)
        self.ln_final = LayerNorm(width)
        # Never read by forward; kept for the released state_dict (uninitialised there too).
        self.positional_embedding = nn.Parameter(torch.zeros(prompt_num, width), requires_grad=False)
        self.text_projection = nn.Parameter(torch.zeros(width, embed_dim), requires_grad=False)

    def forward(self, prompts: torch.Tensor) -> torch.Tensor:
        """prompts ``(B, K, width)`` -> ``(B, K, width)``."""
        return self.ln_final(self.transformer(prompts))
