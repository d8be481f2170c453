"""VLPose's text side: the frozen BLIP-base BERT text encoder, its tokenizer, and the prompts.

VLPose encodes one sentence per image with LAVIS' ``blip_feature_extractor`` (``base``) in
``mode="text"``: bert-base-uncased WordPiece ``[CLS] ... [SEP]``, padded to the longest sentence of
the batch, through the BLIP BERT's **self-attention** layers (its cross-attention is unused in
text mode), keeping the last hidden state of **every** position, pads included. Here that is a
small native module (:class:`BertTextEncoder`, no ``transformers``/LAVIS at run time) whose
parameter names are BERT's, so the released files load by dropping a prefix.

Tokenisation needs bert-base-uncased's ``vocab.txt`` (the file every BERT / BLIP download ships);
:class:`WordPieceTokenizer` reads it. Without one, :func:`word_vocabulary` numbers the prompts'
words itself: enough for models trained here from scratch (the tiny preset, tests), never for the
released weights, whose embedding rows are bert-base-uncased's (the model warns).
"""

from __future__ import annotations

import math
import unicodedata
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from posecore import ConfigError

__all__ = ["DEFAULT_FIXED_PROMPT", "HUMANART_STYLES", "BertTextEncoder", "PromptTokenizer", "WordPieceTokenizer",
           "default_style_prompts", "word_vocabulary"]

#: The COCO stage's fixed sentence (``num_keywords=-1`` in the original).
DEFAULT_FIXED_PROMPT = "a photo of a human"

#: Human-Art's scene folders (the parent directory of each image): real, 2D virtual, 3D virtual.
HUMANART_STYLES: tuple[str, ...] = (
    "acrobatics", "cosplay", "dance", "drama", "movie",
    "cartoon", "digital_art", "ink_painting", "kids_drawing", "mural", "oil_painting", "shadow_play", "sketch",
    "stained_glass", "ukiyoe", "watercolor",
    "garage_kits", "relief", "sculpture",
)


def default_style_prompts(styles: Iterable[str] = HUMANART_STYLES) -> dict[str, str]:
    """OUR default sentence per style: ``"a photo of a human in <style> style"``.

    The original ``data/HumanArt/category_prompt.yaml`` was never published; this template is a
    choice made here (it keeps the word "human", as the original's keypoint-prompt code implies its
    sentences do). Override it with ``model.prompts`` (a ``{style: sentence}`` map).
    """
    return {style: f"a photo of a human in {style.replace('_', ' ')} style" for style in styles}


def _basic_tokens(text: str) -> list[str]:
    """BERT's basic tokenizer for an uncased model: lower case, strip accents, split on white space
    and punctuation (every punctuation character is a token)."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    tokens: list[str] = []
    for word in text.split():
        current = ""
        for ch in word:
            code = ord(ch)
            punct = (33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126
                     or unicodedata.category(ch).startswith("P"))
            if punct:
                if current:
                    tokens.append(current)
                tokens.append(ch)
                current = ""
            else:
                current += ch
        if current:
            tokens.append(current)
    return tokens


class PromptTokenizer:
    """Sentences -> ``[CLS] ... [SEP]`` token ids, with a word -> id vocabulary."""

    def __init__(self, vocab: Mapping[str, int]) -> None:
        missing = [token for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if token not in vocab]
        if missing:
            raise ConfigError(f"vlpose: the text vocabulary lacks the special tokens {missing}")
        self.vocab = dict(vocab)
        self.pad_id, self.unk_id = self.vocab["[PAD]"], self.vocab["[UNK]"]
        self.cls_id, self.sep_id = self.vocab["[CLS]"], self.vocab["[SEP]"]

    def word_ids(self, word: str) -> list[int]:
        return [self.vocab.get(word, self.unk_id)]

    def __call__(self, sentence: str) -> list[int]:
        ids = [self.cls_id]
        for word in _basic_tokens(sentence):
            ids += self.word_ids(word)
        return ids + [self.sep_id]

    @property
    def size(self) -> int:
        return max(self.vocab.values()) + 1


class WordPieceTokenizer(PromptTokenizer):
    """bert-base-uncased tokenisation from its ``vocab.txt`` (one token per line, id = line number):
    greedy longest-match-first word pieces with ``##`` continuations, as BERT's tokenizer does."""

    def __init__(self, vocab_file: str | Path) -> None:
        path = Path(vocab_file)
        if not path.is_file():
            raise ConfigError(f"vlpose: text vocabulary {str(path)!r} not found (bert-base-uncased's vocab.txt)")
        lines = path.read_text(encoding="utf-8").splitlines()
        super().__init__({token: index for index, token in enumerate(lines)})

    def word_ids(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk_id]
        pieces, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk_id]
            pieces.append(found)
            start = end
        return pieces


def word_vocabulary(sentences: Iterable[str]) -> dict[str, int]:
    """A word-level vocabulary of ``sentences`` (specials 0-3, then the words sorted): for models
    trained from scratch only; its ids are not bert-base-uncased's."""
    words = sorted({word for sentence in sentences for word in _basic_tokens(sentence)})
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    vocab.update({word: index + 4 for index, word in enumerate(words)})
    return vocab


def make_tokenizer(vocab_file: str | None, sentences: Sequence[str], vocab_size: int) -> PromptTokenizer:
    """The tokenizer a model uses: bert-base-uncased's from ``vocab_file`` if that file exists, else
    the prompts' own word vocabulary (with a warning when ``vocab_file`` was named but is absent)."""
    if vocab_file is not None and Path(vocab_file).is_file():
        tokenizer: PromptTokenizer = WordPieceTokenizer(vocab_file)
    else:
        if vocab_file is not None:
            warnings.warn(f"vlpose: text vocabulary {vocab_file!r} not found; numbering the prompts' words instead. "
                          "Released VLPose / BLIP weights need bert-base-uncased's vocab.txt there: their text "
                          "embeddings will be wrong without it", stacklevel=3)
        tokenizer = PromptTokenizer(word_vocabulary(sentences))
    if tokenizer.size > vocab_size:
        raise ConfigError(f"vlpose: the text vocabulary has {tokenizer.size} ids but model.text_vocab_size is {vocab_size}")
    return tokenizer


# -- the BERT text encoder --------------------------------------------------------------------


class _Embeddings(nn.Module):
    def __init__(self, vocab_size: int, width: int, max_positions: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, width, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_positions, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)  # noqa: N815 - BERT's parameter name
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.dropout(self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(positions)[None]))


class _SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        batch, length, width = hidden.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        q, k, v = split(self.query(hidden)), split(self.key(hidden)), split(self.value(hidden))
        scores = q @ k.transpose(-1, -2) / math.sqrt(width // self.heads) + mask_bias
        probs = self.dropout(scores.softmax(-1))
        return (probs @ v).transpose(1, 2).reshape(batch, length, width)


class _Output(nn.Module):
    """``dense`` -> dropout -> ``LayerNorm(x + residual)`` (BERT's SelfOutput and Output)."""

    def __init__(self, width_in: int, width: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)  # noqa: N815 - BERT's parameter name
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.add_module("self", _SelfAttention(width, heads, dropout))
        self.output = _Output(width, width, eps, dropout)

    def forward(self, hidden: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        return self.output(self._modules["self"](hidden, mask_bias), hidden)


class _Intermediate(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, hidden)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.dense(hidden))


class _Layer(nn.Module):
    def __init__(self, width: int, heads: int, intermediate: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.attention = _Attention(width, heads, eps, dropout)
        self.intermediate = _Intermediate(width, intermediate)
        self.output = _Output(intermediate, width, eps, dropout)

    def forward(self, hidden: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        hidden = self.attention(hidden, mask_bias)
        return self.output(self.intermediate(hidden), hidden)


class _Encoder(nn.Module):
    def __init__(self, layers: int, *args: object) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(*args) for _ in range(layers))  # type: ignore[arg-type]


class BertTextEncoder(nn.Module):
    """The BLIP-base BERT in text mode: token ids ``(P, L)`` and their mask -> hidden states ``(P, L, W)``.

    Parameter names are BERT's (``embeddings.{word_embeddings, position_embeddings, LayerNorm}``,
    ``encoder.layer.{i}.{attention.self.{query,key,value}, attention.output.{dense,LayerNorm},
    intermediate.dense, output.{dense,LayerNorm}}``). BLIP's med_config: width 768, 12 layers, 12
    heads, 3072 hidden, exact GELU, LayerNorm eps 1e-12, 512 positions, vocabulary 30524
    (bert-base-uncased plus ``[DEC]`` and ``[ENC]``), no token-type embedding, dropout 0.1 (active
    only in train mode). Pads are masked as BERT masks them (``-10000`` added to their logits); the
    pad positions still get outputs, which VLPose keeps.
    """

    def __init__(self, vocab_size: int = 30524, width: int = 768, layers: int = 12, heads: int = 12,
                 intermediate: int = 3072, max_positions: int = 512, eps: float = 1e-12, dropout: float = 0.1) -> None:
        super().__init__()
        if width % heads:
            raise ConfigError(f"vlpose: text width {width} must be a multiple of the text heads {heads}")
        self.width = width
        self.max_positions = max_positions
        self.embeddings = _Embeddings(vocab_size, width, max_positions, eps, dropout)
        self.encoder = _Encoder(layers, width, heads, intermediate, eps, dropout)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(ids)
        mask_bias = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * -10000.0
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask_bias)
        return hidden
