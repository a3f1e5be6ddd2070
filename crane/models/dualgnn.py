"""DualGNN (Wang et al., IEEE TMM 2021, "DualGNN: Dual Graph Neural Network for Multimedia
Recommendation"), as implemented in MMRec (enoche/MMRec, src/models/dualgnn.py; its user
graph from preprocessing/dualgnn-gen-u-u-matrix.py).

Per modality, a GCN over the user-item graph: its input is [preference; MLP_1(leaky_relu(
MLP(features)))] (a trained user table next to the projected item features, rows
L2-normalised), and its output x + A x + A^2 x, A = D^-1/2 A D^-1/2 of the bipartite graph
(torch_geometric's "add" aggregation with that norm, no self-loops). Items: the sum of the
modality outputs. Users (construction 'weighted_sum'): the modality outputs mixed by a
trained per-user weight (U x 2, softmax at initialisation), then the user graph adds
sum_v W[u, v] user[v], W the softmax over the counts of u's 40 users with most shared
training items (crane/graphs/user_user.py; resampled before every epoch, as MMRec's
`pre_epoch_processing`: a user with fewer than 40 is padded by random repeats).
Loss: -mean log2 sigmoid(s_pos - s_neg) + reg_weight * (mean preference^2 over the batch's
users, per modality, + mean weight_u^2 + mean weight_i^2). weight_i only enters this term,
as in MMRec.

Kept from MMRec although it looks unintended: with both modalities, `representation =
self.v_rep; representation += self.t_rep` adds in place, so MMRec's `v_rep` becomes
v + t before the users are mixed: user = w_u0 (v + t) + w_u1 t. This is what MMRec's
numbers measure, so it is reproduced (tests/models/test_dualgnn.py transcribes it).

Deliberate differences from MMRec:
- the user graph is sparse: top-40 per user from R R^T in row blocks, never the dense U x U
  matrix MMRec's preprocessing builds; ties at the 40th place go to the smaller user id
  (torch.topk leaves them unspecified); padding draws come from the engine's generator;
- MMRec's item dropping (`dropv_node_idx`, `edge_index_dropv`, ...) is dead code: its GCN
  never reads the dropped edges. Left out, with the unused MLP_v, MLP_t, MLP_user and
  `result_embed` initialisation. MMRec's `aggr_mode` grid holds only 'add', fixed here;
  `dim_latent` (64 in MMRec's code) is `embedding_size` (64 in its config);
- the log2-BPR is written with logsigmoid / ln 2 (the same value without underflow);
- MMRec scores with `result_embed`, the last training batch's forward (parameters before the
  last optimizer step); here scores come from the current parameters and the current epoch's
  user graph (`scoring_tables`);
- the whole graph is propagated at every batch, as in MMRec: the first hop reads every item's
  projected features, whose MLP dominates the cost, so computing less at the batch's rows
  would save little.

Memory: the user-item graph 2E nonzeros, the user graph U x 40 entries (also its 40
neighbour ids and counts per user), activations (U + N) x embedding_size per layer and
modality plus N x 4 embedding_size for the MLP. No U x U or N x N object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.graphs.user_user import user_co_interaction_graph
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.models.layers import PreferenceGCN, sampled_user_graph, softmax_pair_weights
from crane.ops.losses import logsigmoid_bpr_loss
from crane.ops.propagation import BipartitePropagation
from crane.ops.scores import dot_scores


@dataclass(frozen=True)
class DualGNNConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    user_knn_k: int = hparam(at_least=1)
    reg_weight: float = hparam(at_least=0)


@register("dualgnn")
class DualGNN(Recommender):
    config_class = DualGNNConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = self.config.embedding_size
        self.modalities = self.feature_modalities(data)
        self.gcns = nn.ModuleDict()
        for modality in self.modalities:
            table = data.feature_tensor(modality)
            self.register_buffer(f"features_{modality}", table, persistent=False)
            self.gcns[modality] = PreferenceGCN(self.n_users, table.shape[1], size, self.device)
        self.weight_u = softmax_pair_weights(self.n_users, self.device)
        self.weight_i = softmax_pair_weights(self.n_items, self.device)
        train = data.train_matrix()
        self.graph = BipartitePropagation(symmetric_bipartite_adjacency(train), self.n_users,
                                          self.device)
        self.user_neighbours = user_co_interaction_graph(train, self.config.user_knn_k)
        # a graph before the first epoch (the engine resamples it before every epoch)
        seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        self.resample_user_graph(torch.Generator().manual_seed(seed))

    def features(self, modality: str) -> torch.Tensor:
        return getattr(self, f"features_{modality}")

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """MMRec's pre_epoch_processing: the user graph of this epoch."""
        self.resample_user_graph(generator)

    def resample_user_graph(self, generator: torch.Generator) -> None:
        self.user_graph = sampled_user_graph(self.user_neighbours, self.config.user_knn_k,
                                             self.n_users, generator, self.device)
        self._scoring_cache = None  # scores read the user graph

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users, items) of every node: MMRec's forward up to `result_embed`."""
        outputs = {m: self.gcns[m](self.features(m), self.graph) for m in self.modalities}
        if len(outputs) == 1:
            users, items = next(iter(outputs.values()))
        else:
            (image_users, image_items), (text_users, text_items) = (outputs["image"],
                                                                    outputs["text"])
            items = image_items + text_items
            # MMRec's in-place `representation += t_rep` has turned v_rep into v + t here
            users = ((image_users + text_users) * self.weight_u[:, 0]
                     + text_users * self.weight_u[:, 1])
        users = users + self.user_graph(users)
        return users, items

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        user_all, item_all = self.representations()
        bpr = logsigmoid_bpr_loss(user_all[users], item_all[pos_items],
                                  item_all[neg_items]) / math.log(2.0)
        reg = sum(self.gcns[m].preference[users].square().mean() for m in self.modalities)
        reg = reg + self.weight_u.square().mean() + self.weight_i.square().mean()
        return {"bpr": bpr, "reg": self.config.reg_weight * reg}

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.representations()

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self.scoring_state()
        return dot_scores(user_all[users], item_all)
