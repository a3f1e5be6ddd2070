"""SMORE (Ong & Khong, WSDM 2025, "Spectrum-based Modality Representation Fusion Graph
Convolutional Network for Multimodal Recommendation"), as implemented in MMRec
(enoche/MMRec, src/models/smore.py; src/configs/model/SMORE.yaml).

Views of each node, from the training graph and the item features:
- user-item view: LightGCN over the normalised bipartite graph, mean of layers 0..n_ui_layers
  (`content`);
- spectrum modality fusion: each modality's features are projected to d and taken to their
  orthonormal real spectrum along the embedding dimension (crane/ops/spectral.py); a learned
  complex filter per modality denoises it (uni-modal view), and the product of the spectra
  times a fusion filter is the cross-modality view. Back in the embedding domain, each
  purifies the item ID embedding through its gate: e_v = id * sigmoid(W_v conv_v);
- item-item views: each modality's e_m propagated n_layers times over its top-k cosine graph
  (built once from the raw features, D^-1/2 S D^-1/2 by row sums), the fusion view over the
  element-wise maximum of the modality graphs (on the union of their edges); users take the
  normalised user-item rows (MMRec's R) times the items;
- modality-aware preference: for each modality, softmax(query_m(fusion view)) weighs its
  view; preference gates of `content` (with dropout) weigh the modality views and the fusion
  view; side = mean of those gated views. Final = content + side.
Loss: BPR (log-sigmoid form) + reg_weight * 0.5 * squared L2 of the batch's final embeddings /
batch size + cl_loss * one-way InfoNCE (side -> content, tau 0.2) over the batch's positive
items plus over its users. Scores: final user . final item.

Fidelity notes:
- Item feature tables are trainable, as in MMRec (`from_pretrained(..., freeze=False)`); the kNN
  graphs are built once from the raw features and do not follow them. The graphs come from
  the shared kNN cache (crane/graphs/item_knn.py, by feature hash and k), not from MMRec's
  .pt files in the data folder.
- MMRec computes the preference module for every node, then keeps the batch rows; the
  module is row-wise, so here it runs on the batch's distinct users and items only. Same
  numbers, except that the preference dropout masks are drawn for those rows only (the same
  distribution; with dropout_rate 0 the loss is MMRec's exactly, tests/models/test_smore.py).
- One modality: MMRec's SMORE needs both (its forward reads the image and the text features).
  Here every part generalises over the present modalities: a filter, a gate, a graph, a query
  and a preference gate per modality; the fusion spectrum is the product of the present
  spectra (with one modality, that spectrum itself under the fusion filter), the fusion graph
  the maximum of the present graphs (with one, that graph); side is the mean of the modality
  views and the fusion view. With image and text this is MMRec's computation.
- MMRec divides the squared-L2 term by the configured batch size, which under-regularises the
  last, shorter batch of an epoch; here it is divided by the actual batch size.
- A kNN row whose similarity sum is not positive gets no edges here (MMRec: NaN for a negative
  sum, explicit zeros for a zero sum); with the item itself among its neighbours at cosine 1
  this needs a zero feature row.
- MMRec's SMORE.yaml sets `temperature: 0.2` and `lambda_coeff: 0.9`; the code reads neither
  (the InfoNCE temperature is written as 0.2): left out of the YAML, the temperature fixed.
- MMRec selects the grid point on test Recall@20; here selection is on validation
  (docs/protocol.md) and the test split is evaluated once, at the best validation epoch.

Memory: the user-item graph (2E nonzeros), one kNN graph per modality (N k) and the fusion
graph (at most N (k_image + k_text)), O((U + N) d) for the views; no N x N or U x U object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from crane.graphs.item_knn import cached_neighbours, knn_weighted_graph
from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.models.layers import fused_views_loss
from crane.ops.propagation import SquareGraph, lightgcn_layer_mean
from crane.ops.sparse import graph_mm, to_torch_sparse
from crane.ops.spectral import filtered_inverse, real_spectrum

INFONCE_TEMPERATURE = 0.2  # written in MMRec's calculate_loss
FUSION = "fusion"


@dataclass(frozen=True)
class SMOREConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    n_ui_layers: int = hparam(at_least=0)
    n_layers: int = hparam(at_least=0)
    image_knn_k: int = hparam(at_least=1)
    text_knn_k: int = hparam(at_least=1)
    reg_weight: float = hparam(at_least=0)
    cl_loss: float = hparam(at_least=0)
    dropout_rate: float = hparam(at_least=0, below=1)


def gate(size: int, device: torch.device) -> nn.Sequential:
    return nn.Sequential(nn.Linear(size, size, device=device), nn.Sigmoid())


def query(size: int, device: torch.device) -> nn.Sequential:
    return nn.Sequential(nn.Linear(size, size, device=device), nn.Tanh(),
                         nn.Linear(size, size, bias=False, device=device))


def max_pooled_graph(graphs: list[sp.csr_matrix]) -> sp.csr_matrix:
    """Entry-wise maximum over the union of the graphs' edges (an edge missing from a graph
    does not count as 0 there: MMRec fills it with -inf)."""
    parts = [g.tocoo() for g in graphs]
    n_rows, n_cols = graphs[0].shape
    keys = np.concatenate([p.row.astype(np.int64) * n_cols + p.col for p in parts])
    values = np.concatenate([p.data for p in parts]).astype(np.float32)
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    pooled = np.full(len(unique_keys), -np.inf, dtype=np.float32)
    np.maximum.at(pooled, inverse, values)
    return sp.csr_matrix((pooled, (unique_keys // n_cols, unique_keys % n_cols)),
                         shape=(n_rows, n_cols))


@register("smore")
class SMORE(Recommender):
    config_class = SMOREConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        cfg = self.config
        size = cfg.embedding_size
        self.modalities = self.feature_modalities(data)
        device = data.device

        adjacency = symmetric_bipartite_adjacency(data.train_matrix())
        self.register_buffer("adjacency", to_torch_sparse(adjacency, device), persistent=False)
        # Users aggregate items with the bipartite graph's own normalisation (MMRec's R).
        self.register_buffer("user_item", to_torch_sparse(
            adjacency[:self.n_users, self.n_users:], device), persistent=False)
        knn_k = {"image": cfg.image_knn_k, "text": cfg.text_knn_k}
        graphs = {}
        for modality in self.modalities:
            neighbours = cached_neighbours(data.features[modality], knn_k[modality],
                                           data.cache_dir, data.feature_hashes.get(modality),
                                           device=device)
            graphs[modality] = knn_weighted_graph(neighbours, self.n_items)
        graphs[FUSION] = max_pooled_graph([graphs[m] for m in self.modalities])
        for view, graph in graphs.items():
            self.register_buffer(f"item_graph_{view}", to_torch_sparse(graph, device),
                                 persistent=False)

        self.user_embedding = nn.Embedding(self.n_users, size, device=device)
        self.item_embedding = nn.Embedding(self.n_items, size, device=device)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.features = nn.ParameterDict({
            m: nn.Parameter(data.feature_tensor(m).clone()) for m in self.modalities})
        self.projections = nn.ModuleDict({
            m: nn.Linear(self.features[m].shape[1], size, device=device) for m in self.modalities})
        views = (*self.modalities, FUSION)
        self.queries = nn.ModuleDict({m: query(size, device) for m in self.modalities})
        self.view_gates = nn.ModuleDict({v: gate(size, device) for v in views})
        self.preference_gates = nn.ModuleDict({v: gate(size, device) for v in views})
        # MMRec: torch.randn(1, d // 2 + 1, 2), a complex weight per frequency
        self.filters = nn.ParameterDict({
            v: nn.Parameter(torch.randn(1, size // 2 + 1, 2, device=device)) for v in views})
        self.dropout = nn.Dropout(p=cfg.dropout_rate)

    def spectrum_convolution(self) -> dict[str, torch.Tensor]:
        """Each modality's denoised features and the cross-modality fusion, (N, d) each."""
        size = self.config.embedding_size
        spectra = {m: real_spectrum(self.projections[m](self.features[m]))
                   for m in self.modalities}
        convolved = {m: filtered_inverse(spectra[m], self.filters[m], size)
                     for m in self.modalities}
        # MMRec multiplies text * image * filter; complex products commute bit for bit
        fused = spectra[self.modalities[0]]
        for modality in self.modalities[1:]:
            fused = fused * spectra[modality]
        convolved[FUSION] = filtered_inverse(fused, self.filters[FUSION], size)
        return convolved

    def views(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """User-item view (U+N, d) and the item-item views of each modality and of their
        fusion (U+N, d each), all nodes."""
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        content = lightgcn_layer_mean(SquareGraph(self.adjacency), ego, self.config.n_ui_layers,
                                      stacked_mean=True)
        modal = {}
        for view, convolved in self.spectrum_convolution().items():
            items = self.item_embedding.weight * self.view_gates[view](convolved)
            graph = getattr(self, f"item_graph_{view}")
            for _ in range(self.config.n_layers):
                items = graph_mm(graph, items)
            modal[view] = torch.cat([graph_mm(self.user_item, items), items])
        return content, modal

    def fuse(self, content: torch.Tensor, modal: dict[str, torch.Tensor]) -> torch.Tensor:
        """Modality-aware preference module, row-wise: the side embedding of each given node."""
        fusion = modal[FUSION]
        attended = {m: torch.softmax(self.queries[m](fusion), dim=-1) * modal[m]
                    for m in self.modalities}
        attended[FUSION] = fusion
        preferences = {v: self.preference_gates[v](content) for v in attended}
        preferences = {v: self.dropout(p) for v, p in preferences.items()}
        return torch.stack([preferences[v] * attended[v] for v in attended]).mean(dim=0)

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if neg_items is None:
            raise ValueError("smore trains on (user, positive, negative) triples; got no "
                             "negatives")
        content, modal = self.views()
        return fused_views_loss(content, modal, self.fuse, users, pos_items, neg_items,
                                self.n_users, self.config.reg_weight, self.config.cl_loss,
                                INFONCE_TEMPERATURE)

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        content, modal = self.views()
        final = content + self.fuse(content, modal)
        return tuple(final.split([self.n_users, self.n_items]))

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_table, item_table = self.scoring_state()
        return user_table[users] @ item_table.T
