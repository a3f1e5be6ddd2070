"""The kernel layer: the fast operations models are written in, each next to a plain-autograd
reference (`reference_*`) that computes the same thing, and an equivalence test in tests/ops.

- propagation: the user-item graph as two blocks (scipy on CPU, torch CSR elsewhere), square
  graphs, LightGCN's layer mean and its row-restricted layer sum
- sparse:      CSR x dense products (constant graphs, some rows, gradient-carrying values)
- row_blocks:  some rows of a sparse graph, for propagating only what a batch reads
- losses:      BPR (dot-product and log-sigmoid forms), EmbLoss, BPR-MF's one-node loss
- contrastive: symmetric and one-way InfoNCE, a log-sum-exp of a product
- blocked_info_nce: one-way InfoNCE over all rows of two large tables, logits in row blocks
  (MENTOR)
- gather:      embedding lookups with a cheaper backward; a reused buffer for frozen tables
- dropout:     inverted dropout; degree-sensitive edge dropout of the user-item graph
- sparse_dropout: dropout of each stored entry of a sparse graph (SelfCF's graph encoder)
- segment_softmax: softmax within groups of entries (attention over a node's edges, GRCN)
- spectral:    learned filters over the FFT of the embedding dimension (SMORE)
- scores:      users @ items.T for full ranking
- pca:         features on their leading principal components (scikit-learn; CRANE's
  `input_dim`)
- adam:        Adam through torch's fused kernel
- precision:   the kernels above under bf16 autocast (in float32, as autocast keeps
  reductions)
- threads:     who uses the run's CPU threads (torch's, and hand-split sparse products)

Nothing is imported here, so that a module's code inputs are exactly the kernels it uses.
"""
