"""Runs on several processes with torch.distributed (gloo on CPUs, NCCL on GPUs), started by
torchrun or a batch system: the ranks of a run, and the split of a lattice into slabs for
domain-decomposed LLG (docs/distributed.md).

Slabs: the lattice is cut along its last axis (the slowest in the site index, so a slab is a
contiguous range of sites) into equal slabs, one per rank. Each rank evaluates its provider on
its slab plus `halo` rows of each neighbouring slab, exchanged point-to-point before every
field evaluation; the halo is wide enough that the slab's fields equal those of the undivided
lattice. The thermal noise is keyed by the global site index (LLG site_offset), so a run does
not depend on the number of ranks.
"""
from __future__ import annotations

import builtins
import datetime
import os

import numpy as np
import torch

__all__ = ["Ranks", "launched_processes", "launched_rank", "join_ranks", "Slabs", "reach"]

# True while rank 0 runs a function alone (Ranks.on_rank0): join_ranks then gives one process.
_alone = False


class Ranks:
    """This process's place among the processes of one run (torch.distributed), or a process
    alone (rank 0 of 1). Training: every rank holds all the data; each takes a contiguous share
    of the snapshots of every mini-batch and every evaluated split, and sums are reduced over
    all. LLG: every rank integrates one slab of the lattice (Slabs).

    group: the process group of broadcast, on_rank0 and barrier (None: the default group); sums
    always go through the default group."""

    def __init__(self, rank: int = 0, world: int = 1, device: torch.device | None = None, group=None):
        self.rank, self.world, self.device, self.group = rank, world, device, group

    def patient(self, hours: float) -> "Ranks":
        """These ranks, waiting up to `hours` in broadcast, on_rank0 and barrier, on the CPU (a gloo
        group of their own; torch.distributed's default timeout is 30 minutes): for runs in which
        rank 0 works alone for long while the others wait. Collective: every rank calls it."""
        if not self.distributed:
            return self
        import torch.distributed as dist
        group = dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=hours))
        return Ranks(self.rank, self.world, self.device, group)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def share(self, idx):
        """This rank's contiguous block of idx (empty when idx has fewer entries than ranks)."""
        n = len(idx)
        return idx[n * self.rank // self.world:n * (self.rank + 1) // self.world]

    def sum(self, values: list) -> list:
        """The sums over all ranks of a few numbers (float64; counts stay exact below 2^53)."""
        if not self.distributed:
            return list(values)
        import torch.distributed as dist
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def sum_gradients(self, params) -> None:
        """Replace every gradient by its sum over the ranks (a rank that had no snapshots adds
        zero). A parameter no rank has a gradient for keeps none, as on one process, so that the
        optimizer leaves it (and its step count) alone."""
        if not self.distributed:
            return
        import torch.distributed as dist
        params = [q for q in params if q.requires_grad]
        has_grad = [q.grad is not None for q in params]
        flat = torch.cat([(q.grad if q.grad is not None else torch.zeros_like(q)).reshape(-1) for q in params]
                         + [torch.tensor(has_grad, dtype=params[0].dtype, device=params[0].device)])
        dist.all_reduce(flat)
        sums = flat[:-len(params)].split([q.numel() for q in params])
        for q, g, used in zip(params, sums, flat[-len(params):].tolist()):
            q.grad = g.view_as(q).clone() if used > 0 else None

    def broadcast(self, obj):
        """Rank 0's obj on every rank (picklable objects)."""
        if not self.distributed:
            return obj
        import torch.distributed as dist
        box = [obj]
        on_gpu = self.group is None and self.device.type == "cuda"  # a patient group is gloo's
        dist.broadcast_object_list(box, src=0, group=self.group, device=self.device if on_gpu else None)
        return box[0]

    def on_rank0(self, fn):
        """fn() run on rank 0 alone (a command it calls, such as simulate, joins no process group:
        it runs as one process); its result (picklable) is returned on every rank, and an error
        there is raised on every rank (and not left as a hang of the other ranks in their next
        collective)."""
        global _alone
        result = err = None
        if self.rank == 0:
            outer, _alone = _alone, self.distributed or _alone
            try:
                result = fn()
            except Exception as e:  # re-raised below, after the other ranks have heard of it
                err = e
            finally:
                _alone = outer
        outcome = self.broadcast((result, None) if err is None else (None, (type(err).__name__, str(err))))
        if err is not None:
            raise err
        if outcome[1] is not None:
            name, message = outcome[1]
            raise getattr(builtins, name, RuntimeError)(f"{message} (on rank 0)")
        return outcome[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist
            dist.barrier(group=self.group)


def launched_processes() -> int:
    """How many processes the launcher (torchrun, or a batch system exporting WORLD_SIZE) started
    for this run; 1 without one."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"the environment variable WORLD_SIZE must be a number of processes, got "
                         f"{os.environ['WORLD_SIZE']!r}") from None


def launched_rank() -> int:
    """This process's rank among those the launcher started (RANK; 0 without a launcher)."""
    return int(os.environ.get("RANK", "0")) if launched_processes() > 1 else 0


def join_ranks(device_name: str, *, setting: str, command: str) -> tuple[Ranks, torch.device, bool]:
    """The ranks of this run and this rank's device; joins torch.distributed when the launcher's
    environment (torchrun: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK) says there is
    more than one process, or uses the process group the caller has initialised. The third value
    says whether the group was started here (and is to be destroyed at the end). setting names
    the config key of the device and command the spinforce command, for messages. Inside
    Ranks.on_rank0 it gives a process alone (rank 0 of 1; a GPU device keeps the rank's GPU)."""
    import torch.distributed as dist
    device = torch.device(device_name)
    if _alone:
        return Ranks(), device, False
    started = False
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        backend = str(dist.get_backend())
        wanted = "nccl" if device.type == "cuda" else "gloo"
        if wanted not in backend:
            raise ValueError(f"{setting} {device_name!r} needs a {wanted!r} process group, but "
                             f"torch.distributed was initialised with backend {backend!r}")
    else:
        world = launched_processes()
        if world <= 1:
            return Ranks(), device, False
        if not dist.is_available():
            raise ValueError(f"WORLD_SIZE={world} asks for a distributed run, but this torch is built without "
                             f"torch.distributed")
        missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:
            raise ValueError(f"WORLD_SIZE={world} asks for a distributed run, but {', '.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} not set: launch with torchrun "
                             f"(torchrun --nproc_per_node={world} -m spinforce {command} CONFIG)")
        rank = int(os.environ["RANK"])
    if world > 1 and device.type == "cuda":
        if device.index is not None:
            raise ValueError(f"{setting} is {device_name!r}: on several processes give 'cuda' without "
                             f"an index; each process then uses the GPU cuda:LOCAL_RANK")
        local = int(os.environ.get("LOCAL_RANK", rank))
        if local >= torch.cuda.device_count():
            raise ValueError(f"process with LOCAL_RANK={local} has no GPU: torch sees {torch.cuda.device_count()} "
                             f"CUDA device(s) on this node; start at most one process per GPU")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        started = True
    return Ranks(rank, world, device), device, started


# --- domain decomposition ---------------------------------------------------------------------
def reach(offsets) -> int:
    """How many rows of the last lattice axis the neighbour offsets (m, dim) span: max |n_last|."""
    offsets = np.asarray(offsets)
    return int(np.abs(offsets[:, -1]).max()) if offsets.size else 0


class Slabs:
    """The lattice cut along its last axis into equal slabs, one per rank, each seen with `halo`
    rows of its neighbours on either side (the padded slab, a lattice of shape padded_shape whose
    sites [first, first + num_sites) are the slab's).

    halo: rows of the last axis the provider needs beyond the slab (`why` says why, for messages).
    ValueError naming lattice.shape when the ranks do not divide the last side, or when a slab is
    thinner than the halo (its halo would then come from slabs beyond its neighbours).
    Every method below is collective: all ranks call it, in the same order.
    """

    def __init__(self, shape, ranks: Ranks, halo: int, why: str = ""):
        shape = tuple(int(L) for L in shape)
        side, world = shape[-1], ranks.world
        if side % world:
            raise ValueError(f"lattice.shape = {shape}: its last side {side} must be divisible by the number of "
                             f"processes, {world} (the lattice is cut into {world} equal slabs along its last axis)")
        rows = side // world
        if rows < halo:
            raise ValueError(f"lattice.shape = {shape} on {world} processes gives slabs of {rows} rows along the last "
                             f"axis, thinner than the halo of {halo} rows{' ' + why if why else ''}; run on at most "
                             f"{max(1, side // halo)} processes or on a lattice with a longer last side")
        self.ranks, self.halo, self.rows = ranks, int(halo), rows
        self.row_sites = int(np.prod(shape[:-1]))
        self.num_sites = rows * self.row_sites
        self.site_offset = ranks.rank * self.num_sites  # global index of the slab's first site
        self.padded_shape = shape[:-1] + (rows + 2 * self.halo,)
        self.first = self.halo * self.row_sites
        self.halo_bytes = 0  # bytes this rank has sent in halo exchanges

    def exchange(self, slab: torch.Tensor) -> torch.Tensor:
        """The padded slab (spins of the padded lattice) from this rank's slab (num_sites, 3): its
        lower rows go to the previous rank, its upper rows to the next (periodically)."""
        if self.halo == 0:
            return slab
        import torch.distributed as dist
        rank, world, k = self.ranks.rank, self.ranks.world, self.first
        down, up = slab[:k].contiguous(), slab[-k:].contiguous()
        below, above = torch.empty_like(down), torch.empty_like(up)
        prev, after = (rank - 1) % world, (rank + 1) % world
        # With two ranks prev == after: the tags (gloo) and the order of the operations (NCCL)
        # keep the two messages apart.
        ops = [dist.P2POp(dist.isend, down, prev, tag=0), dist.P2POp(dist.isend, up, after, tag=1),
               dist.P2POp(dist.irecv, above, after, tag=0), dist.P2POp(dist.irecv, below, prev, tag=1)]
        for request in dist.batch_isend_irecv(ops):
            request.wait()
        self.halo_bytes += down.nbytes + up.nbytes
        return torch.cat([below, slab, above])

    def slab_of(self, padded: torch.Tensor) -> torch.Tensor:
        """The slab's rows of a per-site array of the padded lattice."""
        return padded[self.first:self.first + self.num_sites]

    def gather(self, slab: torch.Tensor):
        """The whole lattice's array on rank 0 (None on the others) from every rank's slab."""
        import torch.distributed as dist
        slab = slab.contiguous()
        parts = [torch.empty_like(slab) for _ in range(self.ranks.world)] if self.ranks.rank == 0 else None
        dist.gather(slab, parts, dst=0)
        return torch.cat(parts) if parts is not None else None

    def scatter(self, whole, device) -> torch.Tensor:
        """This rank's slab of rank 0's (N, 3) float64 array `whole` (ignored on the other ranks)."""
        import torch.distributed as dist
        out = torch.empty((self.num_sites, 3), dtype=torch.float64, device=device)
        parts = None
        if self.ranks.rank == 0:
            whole = torch.as_tensor(np.ascontiguousarray(whole, dtype=np.float64)).to(device)
            parts = [p.contiguous() for p in whole.split(self.num_sites)]
        dist.scatter(out, parts, src=0)
        return out
