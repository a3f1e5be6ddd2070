"""A fixed reference workload, timed beside every measurement: how fast the machine is now.

On a shared virtual machine the same code's epoch time moves with the neighbours' load,
and the load average does not show it: the neighbours are outside the machine. So each
measurement process also times this probe, at its start and at its end, and the tables print
it beside the model's times: a higher reading means a slower machine at the time. It is
coarse: the machine's speed also moves within a run.

The workload is torch's fused Adam kernel over two float32 tables of BPR-MF's Baby size
(19,445 and 7,050 rows of 64) on one thread: about 48 MB of memory traffic a step, the kind
of work that bounds the ID models' epochs. The timed work is torch's alone (pinned), never this
project's code, so the probe reads the same across project commits.
"""

from __future__ import annotations

import statistics
import time

import torch

from crane.ops.threads import torch_threads

TABLE_ROWS = (19_445, 7_050)
EMBEDDING_SIZE = 64


def reference_step_ms(steps_timed: int = 40) -> float:
    """Median milliseconds of one fused Adam step over the reference tables, on one thread."""
    with torch_threads(1):
        generator = torch.Generator().manual_seed(0)
        params = [torch.randn(rows, EMBEDDING_SIZE, generator=generator) for rows in TABLE_ROWS]
        grads = [torch.randn(param.shape, generator=generator) for param in params]
        exp_avgs = [torch.zeros_like(param) for param in params]
        exp_avg_sqs = [torch.zeros_like(param) for param in params]
        steps = [torch.zeros(()) for _ in params]
        # the kernels of torch.optim.Adam(fused=True).step, called directly: building the
        # optimiser imports torch._dynamo, whose resident memory the peak-memory column
        # would then count
        times = []
        for _ in range(steps_timed + 1):  # the first one touches fresh memory: not timed
            start = time.perf_counter()
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                               lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                               maximize=False, grad_scale=None, found_inf=None)
            times.append(time.perf_counter() - start)
        return statistics.median(times[1:]) * 1000
