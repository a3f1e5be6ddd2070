"""A fixed reference workload, timed beside every measurement: how fast the machine is now.

On a shared VM the same code's epoch time moves by up to 1.5x within a day (benchmarks/
README.md, "Run to run"), and the load average does not show it: the neighbours that slow
us down are outside this VM. So each measurement process also times this probe, at its start
and at its end, and the tables print it beside the model's times: a row measured while the
probe read 1.5 ms was taken on a ~1.5x slower machine than one where it read 1.0 ms.

The workload is torch's fused Adam step over two float32 tables of BPR-MF's Baby size (19,445
and 7,050 rows of 64) on one thread: about 48 MB of memory traffic, the kind of work that
bounds the ID models' epochs. It calls only torch (pinned), never this project's code, so
the probe reads the same across project commits.
"""

from __future__ import annotations

import statistics
import time

import torch

TABLE_ROWS = (19_445, 7_050)
EMBEDDING_SIZE = 64


def reference_step_ms(steps: int = 40) -> float:
    """Median milliseconds of one fused Adam step over the reference tables, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(rows, EMBEDDING_SIZE, generator=generator))
                  for rows in TABLE_ROWS]
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator)
        optimizer = torch.optim.Adam(params, lr=1e-3, fused=True)
        optimizer.step()  # creates the state
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            optimizer.step()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000
    finally:
        torch.set_num_threads(threads)
