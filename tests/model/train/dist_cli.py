"""`app.cli` as the distributed tests launch it (``accelerate launch ... tests/model/train/dist_cli.py
train ...``), with two test-only additions, each switched on by an environment variable:

STREAMO_WAIT_TRACE=PREFIX  every ``torch.distributed.barrier`` and every frame decode in this process,
    with its start and end (wall clock), one JSON line each in ``PREFIX.rank<R>.jsonl``: the proof
    that no rank waits at a barrier while another decodes.
STREAMO_FORCE_FSDP=1  accelerate turns FSDP on only for GPU backends (on the CPU the same launch runs
    plain data-parallel); this turns the launch's FSDP plugin on for the CPU (gloo) processes, so the
    trainer's sharded path (torch's fully_shard over gloo) runs here.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _record(prefix: str, kind: str, start: float, **extra: object) -> None:
    rank = os.environ.get("RANK", "0")
    with open(f"{prefix}.rank{rank}.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"event": kind, "rank": int(rank), "start": start, "end": time.time(), **extra}) + "\n")


def _trace_waits(prefix: str) -> None:
    import torch.distributed as dist

    from model.train.video import FrameCache

    barrier, decode = dist.barrier, FrameCache._decode

    def traced_barrier(*args, **kwargs):
        start = time.time()
        try:
            return barrier(*args, **kwargs)
        finally:
            _record(prefix, "barrier", start)

    def traced_decode(self, path):
        start = time.time()
        try:
            return decode(self, path)
        finally:
            _record(prefix, "decode", start, video=str(path))

    dist.barrier = traced_barrier
    FrameCache._decode = traced_decode


def _force_fsdp() -> None:
    import accelerate
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    init = accelerate.Accelerator.__init__

    def fsdp_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.state.distributed_type == DistributedType.MULTI_CPU:
            self.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from the launch's FSDP_* variables
            self.state.distributed_type = DistributedType.FSDP
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    accelerate.Accelerator.__init__ = fsdp_init


if __name__ == "__main__":
    if os.environ.get("STREAMO_WAIT_TRACE"):
        _trace_waits(os.environ["STREAMO_WAIT_TRACE"])
    if os.environ.get("STREAMO_FORCE_FSDP") == "1":
        _force_fsdp()
    from app.cli import main

    sys.exit(main(sys.argv[1:]))
