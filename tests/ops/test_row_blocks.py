"""crane.ops.row_blocks: row gathers of a sparse graph equal rows of the dense matrix power."""

import numpy as np
import scipy.sparse as sp
import torch

from crane.ops.row_blocks import CsrGraph, multi_hop_blocks


def test_row_gathers_equal_dense_powers():
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 30)) < 0.1) * rng.random((30, 30))
    dense[3] = 0.0  # an empty row
    graph = CsrGraph.from_scipy(sp.csr_matrix(dense.astype(np.float32)))
    x = torch.randn(30, 4)
    targets = torch.tensor([0, 3, 7, 29])
    for hops in (1, 2, 3):
        blocks = multi_hop_blocks(graph, targets, hops)
        values = x[blocks[-1].columns]
        for block in reversed(blocks):
            values = block.propagate(values)
        expected = np.linalg.matrix_power(dense, hops)[targets.numpy()] @ x.numpy()
        assert np.allclose(values.numpy(), expected, atol=1e-5)
    one_hop = multi_hop_blocks(graph, targets, 1)[0]
    reached = np.flatnonzero(dense[targets.numpy()].sum(0))
    assert np.array_equal(one_hop.columns.numpy(), reached)
    assert np.allclose(graph.to_torch().to_dense().numpy(), dense.astype(np.float32))
