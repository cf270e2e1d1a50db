"""Packed sweeps: which trials share a pack, and how large packs are.

A sweep with ``execution: {pack: auto | K}`` hands the driver loop pack jobs (``loop.pack_of``)
instead of single trials: packable trials (``engine.packed.packability``) with the same
``pack_key`` are grouped, up to K per pack, in the order they would have run; a trial that
cannot be packed still goes through the packed task alone, which runs it unpacked and
records why (the ``execution`` column of ``bench results``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from bench_service.cluster.loop import Job, pack_of

#: ``pack: auto`` where the driver cannot see the GPU the trials will use.
AUTO_PACK_UNSEEN_GPU = 64
#: Largest pack ``auto`` picks (the benchmark's top size: ~100x one-at-a-time on an H100).
AUTO_PACK_MAX = 512
#: Share of the free GPU memory ``auto`` lets one pack use.
AUTO_MEMORY_SHARE = 0.5
#: Bytes ``auto`` assumes per member beyond its model state (activations, batch, masks).
ACTIVATION_SLACK = 4


def pack_size(pack: int | str | None, config: dict[str, Any] | None) -> int:
    """Members per pack for a sweep's ``execution.pack``; 0 means do not pack.

    ``auto``: unpacked on CPU; on CUDA, as many members as fit in ``AUTO_MEMORY_SHARE`` of
    the free memory at the workload's estimated bytes per member (``ACTIVATION_SLACK`` times
    its model state), a power of two up to ``AUTO_PACK_MAX``.
    """
    if pack is None:
        return 0
    if isinstance(pack, int):
        return pack
    device = str((config or {}).get("device", "cpu"))
    if not device.startswith("cuda"):
        return 0
    return _auto_cuda(config or {})


def _auto_cuda(config: dict[str, Any]) -> int:
    import torch

    from bench_service.engine.runner import prepare_trial

    if not torch.cuda.is_available():
        return AUTO_PACK_UNSEEN_GPU
    try:
        prep = prepare_trial(config)
        per_member = max(prep.workload.estimated_bytes(), 2**20) * ACTIVATION_SLACK
        free, _ = torch.cuda.mem_get_info()
    except Exception:
        return AUTO_PACK_UNSEEN_GPU
    fits = int(free * AUTO_MEMORY_SHARE // per_member)
    k = 1
    while k * 2 <= min(fits, AUTO_PACK_MAX):
        k *= 2
    return k


def pack_jobs(jobs: Iterable[Job], size: int) -> Iterator[Job]:
    """Group ``jobs`` into packs of up to ``size`` members sharing a ``pack_key``.

    A pack is handed out as soon as it is full; the partial packs at the end follow in the
    order of their first member. Unpackable jobs go alone (one-member packs).
    """
    from bench_service.engine.packed import pack_key_of

    open_packs: dict[Any, list[Job]] = {}
    for job in jobs:
        key = pack_key_of(job.config)
        if key is None:
            yield pack_of([job])
            continue
        members = open_packs.setdefault(key, [])
        members.append(job)
        if len(members) >= size:
            del open_packs[key]
            yield pack_of(members)
    for members in open_packs.values():
        yield pack_of(members)
