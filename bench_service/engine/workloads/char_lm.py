"""A small causal transformer that models characters of a generated English-like corpus.

The corpus comes from a seeded probabilistic grammar in this module, driven by a tiny
self-contained PRNG (splitmix64), so it is byte-identical on every machine and Python, torch
or numpy version, and nothing is downloaded. The grammar has structure at several ranges for
the model to learn: spelling (characters within words), agreement (a singular subject takes
"sees", a plural one "see"), and a tense chosen per paragraph that every clause follows.
"""

from __future__ import annotations

import math
import string
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from bench_service.engine.errors import ConfigError
from bench_service.engine.hparams import HyperParam, ParamSpace
from bench_service.engine.workloads._registry import WORKLOADS
from bench_service.engine.workloads.base import (
    MODEL_BYTES_PER_PARAM,
    ArchOptions,
    Dataset,
    Target,
    Workload,
)

#: Seed of the corpus: the same text for every trial.
CORPUS_SEED = 2_718
#: Characters the model knows (a fixed alphabet, so the vocabulary never depends on the text).
VOCAB = "\n \",." + string.ascii_uppercase + string.ascii_lowercase
_INDEX = {ch: i for i, ch in enumerate(VOCAB)}

# --- the corpus -------------------------------------------------------------------------------
_MASK = (1 << 64) - 1


class _SplitMix64:
    """A 64-bit PRNG whose stream is fixed by its seed alone (unlike ``random``/numpy)."""

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK

    def below(self, n: int) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return (z ^ (z >> 31)) % n

    def pick(self, options: tuple[Any, ...]) -> Any:
        return options[self.below(len(options))]

    def chance(self, percent: int) -> bool:
        return self.below(100) < percent


_NAMES = ("Alice", "Bruno", "Clara", "Dmitri", "Elena", "Farid", "Grace", "Hugo")
_DET_ONE = ("the", "a", "one", "every", "this", "that")
_DET_MANY = ("the", "some", "many", "two", "three", "these", "those", "all the")
_ADJS = (
    "small", "quiet", "red", "old", "clever", "bright", "heavy", "strange", "gentle",
    "tired", "green", "wooden", "young", "silver",
)
_NOUNS = (  # (singular, plural)
    ("cat", "cats"), ("dog", "dogs"), ("bird", "birds"), ("child", "children"),
    ("river", "rivers"), ("tree", "trees"), ("house", "houses"), ("farmer", "farmers"),
    ("letter", "letters"), ("ship", "ships"), ("mountain", "mountains"), ("box", "boxes"),
    ("mouse", "mice"), ("teacher", "teachers"), ("garden", "gardens"), ("lamp", "lamps"),
)
_TRANSITIVE = (  # (third person singular, plural, past)
    ("sees", "see", "saw"), ("finds", "find", "found"), ("likes", "like", "liked"),
    ("carries", "carry", "carried"), ("watches", "watch", "watched"),
    ("follows", "follow", "followed"), ("paints", "paint", "painted"),
    ("builds", "build", "built"),
)
_INTRANSITIVE = (
    ("sleeps", "sleep", "slept"), ("runs", "run", "ran"), ("waits", "wait", "waited"),
    ("sings", "sing", "sang"), ("falls", "fall", "fell"), ("laughs", "laugh", "laughed"),
)
_ADVERBS = ("slowly", "quickly", "quietly", "again", "today", "at night", "in the morning")
_PREPS = ("near", "under", "behind", "beside", "above", "inside", "across")
_CONJ = ("and", "but", "because", "while", "so")


def _noun_phrase(rng: _SplitMix64) -> tuple[str, bool]:
    """A noun phrase and whether it is plural."""
    if rng.chance(20):
        return rng.pick(_NAMES), False
    plural = rng.chance(40)
    words = [rng.pick(_DET_MANY if plural else _DET_ONE)]
    if rng.chance(50):
        words.append(rng.pick(_ADJS))
    words.append(rng.pick(_NOUNS)[1 if plural else 0])
    return " ".join(words), plural


def _clause(rng: _SplitMix64, past: bool) -> str:
    subject, plural = _noun_phrase(rng)
    transitive = rng.chance(60)
    forms = rng.pick(_TRANSITIVE if transitive else _INTRANSITIVE)
    words = [subject, forms[2] if past else forms[1 if plural else 0]]
    if transitive:
        words.append(_noun_phrase(rng)[0])
    if rng.chance(35):
        words += [rng.pick(_PREPS), _noun_phrase(rng)[0]]
    if rng.chance(25):
        words.append(rng.pick(_ADVERBS))
    return " ".join(words)


def _sentence(rng: _SplitMix64, past: bool) -> str:
    text = _clause(rng, past)
    if rng.chance(30):
        text += " " + rng.pick(_CONJ) + " " + _clause(rng, past)
    text = text[0].upper() + text[1:] + "."
    if rng.chance(10):
        text = f"{rng.pick(_NAMES)} {'said' if past else 'says'}, \"{text}\""
    return text


def generate_corpus(n_chars: int, seed: int = CORPUS_SEED) -> str:
    """At least ``n_chars`` characters of paragraphs (3-6 sentences, one tense each)."""
    rng = _SplitMix64(seed)
    parts: list[str] = []
    size = 0
    while size < n_chars:
        past = rng.chance(50)
        paragraph = " ".join(_sentence(rng, past) for _ in range(3 + rng.below(4))) + "\n"
        parts.append(paragraph)
        size += len(paragraph)
    return "".join(parts)


def _windows(codes: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping inputs of ``context`` characters and their next-character targets."""
    n = (len(codes) - 1) // context
    x = codes[: n * context].view(n, context)
    y = codes[1 : n * context + 1].view(n, context)
    return x, y


# --- the model --------------------------------------------------------------------------------
class _Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention then a 4x GELU MLP."""

    def __init__(self, d_model: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.out = nn.Linear(4 * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, c = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(b, t, 3, self.n_head, -1).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.drop(self.proj(att.transpose(1, 2).reshape(b, t, c)))
        return h + self.drop(self.out(F.gelu(self.fc(self.ln2(h)))))


class _CharTransformer(nn.Module):
    """Token + learned position embeddings, ``n_layer`` blocks, final LayerNorm, linear head."""

    def __init__(
        self, vocab: int, context: int, d_model: int, n_layer: int, n_head: int, dropout: float
    ) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d_model)
        self.pos_emb = nn.Parameter(torch.empty(context, d_model))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(d_model, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.tok_emb(idx) + self.pos_emb[: idx.shape[1]])
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))

    def init_weights(self, g: torch.Generator) -> None:
        """GPT-2's scheme: weights and embeddings N(0, 0.02²), biases 0, LayerNorms reset."""
        with torch.no_grad():
            self.pos_emb.normal_(0.0, 0.02, generator=g)
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    module.weight.normal_(0.0, 0.02, generator=g)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    module.bias.zero_()
                elif isinstance(module, nn.LayerNorm):
                    module.reset_parameters()


@WORKLOADS.register
class CharLM(Workload):
    """Next-character prediction with a small causal transformer (2 layers, 2 heads, d=64).

    Data: ``train_chars`` characters of generated text cut into non-overlapping windows of
    ``context`` characters (2,048 at the defaults) and the following ``val_chars`` as
    validation windows (256); targets are the inputs shifted by one. The loss is
    cross-entropy averaged over every position; ``val_accuracy`` is next-character accuracy
    and ``evaluate`` adds ``val_perplexity = exp(val_loss)``.

    Architecture options: ``dropout`` acts on the embeddings and on both residual branches
    of every block. LayerNorm is native to the model (pre-LN blocks and a final LayerNorm),
    so ``norm="layernorm"`` is accepted and builds the very same model; the other norms are
    not offered (BatchNorm across positions would leak future characters).

    Target: ``val_loss ≤ 1.0`` nats per character (perplexity e; 4.1 at the start), which
    Adam (lr 1e-3, batch 64) reaches in 9-12 of the default 15 epochs (about 0.8 at the end).
    """

    name = "char_lm"
    description = (
        "Character-level causal transformer (2 layers, d_model 64, context 64) on a generated "
        "English-like corpus; reports val_perplexity."
    )
    hyperparams = ParamSpace((
        HyperParam("n_layer", 2, kind="int", minimum=1, maximum=64, help="transformer blocks"),
        HyperParam(
            "n_head", 2, kind="int", minimum=1, maximum=64, help="attention heads per block",
        ),
        HyperParam("d_model", 64, kind="int", minimum=1, maximum=4096, help="embedding width"),
        HyperParam(
            "context", 64, kind="int", minimum=2, maximum=4096, help="characters per window",
        ),
        # The corpus is generated in pure Python: 10^7 characters take tens of seconds.
        HyperParam(
            "train_chars", 131_072, kind="int", minimum=1_024, maximum=10**7,
            help="training text length",
        ),
        HyperParam(
            "val_chars", 16_384, kind="int", minimum=256, maximum=10**7,
            help="validation text length",
        ),
    ))
    target = Target("val_loss", 1.0, "min")
    default_batch_size = 64
    default_epochs = 15
    classification = True
    supports_dropout = True
    supported_norms = ("layernorm",)

    def estimated_bytes(self) -> int:
        """The corpus (text, code list, int64 tensor) and the transformer's parameters."""
        p = self.params
        chars = int(p["train_chars"]) + int(p["val_chars"])
        d, layers, context = int(p["d_model"]), int(p["n_layer"]), int(p["context"])
        params = layers * (12 * d * d + 13 * d) + (2 * len(VOCAB) + context + 2) * d
        return 17 * chars + MODEL_BYTES_PER_PARAM * params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        d_model, n_head = int(self.params["d_model"]), int(self.params["n_head"])
        if d_model % n_head:
            raise ConfigError(
                "workload.params.n_head", f"must divide d_model ({d_model}), got {n_head}",
            )
        if min(self.params["train_chars"], self.params["val_chars"]) <= self.params["context"]:
            raise ConfigError(
                "workload.params.context", "must be shorter than train_chars and val_chars",
            )

    def make_data(self) -> Dataset:
        n_train, n_val = int(self.params["train_chars"]), int(self.params["val_chars"])
        text = generate_corpus(n_train + n_val + 2)
        codes = torch.tensor([_INDEX[ch] for ch in text[: n_train + n_val + 2]])
        context = int(self.params["context"])
        # Character n_train is only ever the last training target; validation starts after.
        x_train, y_train = _windows(codes[: n_train + 1], context)
        x_val, y_val = _windows(codes[n_train + 1 :], context)
        return Dataset(x_train, y_train, x_val, y_val)

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        p = self.params
        with torch.device("meta"):  # no draw from the global RNG
            model = _CharTransformer(
                len(VOCAB), int(p["context"]), int(p["d_model"]), int(p["n_layer"]),
                int(p["n_head"]), arch.dropout,
            )
        model.to_empty(device="cpu")
        model.init_weights(self.generator(seed))
        return model

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.flatten(0, 1), target.flatten())

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
    ) -> dict[str, float]:
        metrics = super().evaluate(model, x, y, batch_size)
        try:
            metrics["val_perplexity"] = math.exp(metrics["val_loss"])
        except OverflowError:
            metrics["val_perplexity"] = math.inf
        return metrics

