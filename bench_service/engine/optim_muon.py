"""Muon as practitioners run it: ``torch.optim.Muon`` on hidden matrices, AdamW on the rest.

Muon orthogonalises the momentum of a 2-D weight matrix (Newton-Schulz iterations), which
only makes sense for the matrices *inside* a network. Its authors (Jordan et al. 2024) and
every public recipe (modded-nanogpt, Moonlight) give the embeddings, the output head and all
gains and biases to AdamW. The split rule used here:

- **Muon**: the weight of every ``nn.Linear`` module except the last one in module order
  (the output head), unless that weight is shared with an ``nn.Embedding`` (a tied head).
- **AdamW**: everything else: ``nn.Embedding`` weights, free 2-D parameters such as learned
  position embeddings, the head, biases, norm gains, and convolution filters (torch's Muon
  accepts 2-D parameters only).

A model without any such hidden matrix (logistic regression, a quadratic, a CNN whose only
Linear is its head) has nothing for Muon to do: ``muon_groups`` refuses it with a message
that says why, and the runner checks this before a sweep starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from bench_service.engine.errors import IncompatibleError

#: Key of a param group that marks it for Muon (``True``) or AdamW (``False``).
USE_MUON = "use_muon"


def hidden_matrices(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the parameters that go to Muon and of those that go to AdamW (trainable only)."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    hidden: set[int] = set()
    for _name, module in linears[:-1]:  # the last Linear is the head
        w = module.weight
        if w.requires_grad and w.ndim == 2 and id(w) not in embedded:
            hidden.add(id(w))
    muon: list[str] = []
    adamw: list[str] = []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (muon if id(p) in hidden else adamw).append(name)
    return muon, adamw


def muon_groups(model: nn.Module, where: str = "optimizer") -> list[dict[str, Any]]:
    """Two param groups (Muon's hidden matrices, AdamW's rest) or ``IncompatibleError``."""
    muon, adamw = hidden_matrices(model)
    if not muon:
        raise IncompatibleError(
            where,
            f"muon needs a 2-D hidden weight matrix (an nn.Linear that is not the output "
            f"head) and {type(model).__name__} has none; use it with an MLP or a transformer "
            "(mlp_digits, char_lm, gpt_small)",
        )
    named = dict(model.named_parameters())
    groups = [{"params": [named[n] for n in muon], USE_MUON: True}]
    if adamw:
        groups.append({"params": [named[n] for n in adamw], USE_MUON: False})
    return groups


def torch_optimizer(name: str, since: str) -> Any:
    """``torch.optim.<name>``, or a one-line ``IncompatibleError`` naming the torch release
    that added it (the package's metadata allows torch>=2.4, older than some entries)."""
    cls = getattr(torch.optim, name, None)
    if cls is None:
        raise IncompatibleError(
            "optimizer", f"torch.optim.{name} needs torch>={since}; this is torch "
            f"{torch.__version__}"
        )
    return cls


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer over two: ``torch.optim.Muon`` and ``torch.optim.AdamW``.

    The param groups are the two inner optimizers' own group dicts (so an LR schedule scales
    both learning rates by the same factor) and both share this optimizer's ``state``; the
    arithmetic is entirely torch's: ``step`` calls ``Muon.step`` then ``AdamW.step``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        muon: Mapping[str, Any],
        adamw: Mapping[str, Any],
    ) -> None:
        items: list[Any] = list(params)
        groups: list[dict[str, Any]]
        if items and isinstance(items[0], dict):
            groups = items
        else:  # plain tensors (no model to look at): matrices to Muon, the rest to AdamW
            tensors: list[torch.Tensor] = items
            groups = [{"params": [p for p in tensors if p.ndim == 2], USE_MUON: True},
                      {"params": [p for p in tensors if p.ndim != 2], USE_MUON: False}]
        to_muon = [p for g in groups if g.get(USE_MUON) for p in g["params"]]
        to_adamw = [p for g in groups if not g.get(USE_MUON) for p in g["params"]]
        super().__init__(to_muon + to_adamw, {})
        self.inner: list[torch.optim.Optimizer] = []
        if to_muon:
            self.inner.append(torch_optimizer("Muon", "2.9")(to_muon, **muon))
        if to_adamw:
            self.inner.append(torch.optim.AdamW(to_adamw, **adamw))
        self.param_groups = [g for opt in self.inner for g in opt.param_groups]
        for opt in self.inner:
            opt.state = self.state

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.inner:
            opt.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"inner": [opt.state_dict() for opt in self.inner]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        merged: Any = type(self.state)(dict)
        for opt, sd in zip(self.inner, state_dict["inner"], strict=True):
            opt.load_state_dict(sd)
            merged.update(opt.state)
        self.state = merged
        for opt in self.inner:
            opt.state = merged
        self.param_groups = [g for opt in self.inner for g in opt.param_groups]
