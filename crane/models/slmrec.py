"""SLMRec (Tao et al., IEEE TMM 2022, "Self-supervised Learning for Multimedia
Recommendation"), as implemented in MMRec (enoche/MMRec, src/models/slmrec.py) with its
configured self-supervised task, FAC (fine and coarse modality alignment).

Views: LightGCN (mean over layers 0..n_layers, MMRec's 'pre' adjacency D^-1/2 A D^-1/2) of
the user and item ID embeddings, and per modality of the user ID embeddings next to the
projected item features (Linear of the L2-normalised raw features). The views are
concatenated ([ID, image, text]) and mapped by one Linear for users and one for items.
Loss: InfoNCE of each batch user against its positive item, the other positives of the batch
as negatives (cosine / temp; `crane.ops.contrastive.one_way_info_nce` computes exactly
MMRec's normalise + cross-entropy) + ssl_alpha * FAC. FAC on the batch's positive items:
x_iv = g_i_iv(ID view), cross-entropy of x_iv @ g_v_iv(image view)^T / ssl_temp against the
diagonal, then x_ivat = g_iva_ivat(g_iv_iva(x_iv)) against g_t_ivat(text view) the same way
(no normalisation, as in MMRec). No negatives are sampled. Everything is trained; the raw
features are frozen (plain tensors in MMRec).

Deliberate differences from MMRec:
- the three views are propagated as one table with their columns side by side: the same
  products (propagation is linear, column by column), one sparse pass instead of three; the
  last layer is computed at the batch's rows only (the loss reads nothing else), and the
  output Linears run on the batch's distinct rows; the same values
  (tests/models/test_slmrec.py);
- one modality: MMRec needs both (its compute reads the image and the text views
  unconditionally); here the views and the FAC terms are those of the modalities present
  (image alone is MMRec's kwai branch; text alone keeps the FAC chain x_iv -> x_ivat);
- only FAC: MMRec's FD and FM tasks read an audio view and a config key
  (`data.input.dataset`) that do not exist there, and its `init: normal` a table that does
  not exist, so those settings cannot run in MMRec and are not accepted (nor `ssl_task`,
  `init`, `mm_fusion_mode` (concat only: the output Linears are sized for it),
  `dropout_rate`, `adj_type`); `reg` is in MMRec's grid but read nowhere: not accepted;
  `g_a_iva` (the audio head, unused) is not built;
- scores are user . item; MMRec returns sigmoid of them (the same ranking, except that
  float32 sigmoid ties scores above ~17), and from the embeddings of the last training
  batch's forward (parameters before the last optimizer step); here from the current ones.

Memory: the propagated table is (U+N) x (M+1) x embedding_size; the InfoNCE and FAC logits
batch x batch. No U x U or N x N object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.ops.contrastive import one_way_info_nce
from crane.ops.propagation import (BipartitePropagation, lightgcn_layer_mean,
                                   lightgcn_layer_sum_at)
from crane.ops.scores import dot_scores


@dataclass(frozen=True)
class SLMRecConfig(HyperParameters):
    embedding_size: int = hparam(at_least=2)   # MMRec's recdim (halved by the text head)
    n_layers: int = hparam(at_least=0)         # MMRec's layer_num
    temp: float = hparam(above=0)
    ssl_temp: float = hparam(above=0)
    ssl_alpha: float = hparam(at_least=0)


def xavier_linear(size_in: int, size_out: int, device: torch.device) -> nn.Linear:
    linear = nn.Linear(size_in, size_out, device=device)
    nn.init.xavier_uniform_(linear.weight)
    return linear


@register("slmrec")
class SLMRec(Recommender):
    config_class = SLMRecConfig
    uses_content = True
    uses_negatives = False

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        d = self.config.embedding_size
        self.modalities = self.feature_modalities(data)
        self.embedding_user = nn.Embedding(self.n_users, d, device=self.device)
        self.embedding_item = nn.Embedding(self.n_items, d, device=self.device)
        nn.init.xavier_uniform_(self.embedding_user.weight, gain=1)
        nn.init.xavier_uniform_(self.embedding_item.weight, gain=1)
        self.dense = nn.ModuleDict()
        for modality in self.modalities:
            table = F.normalize(data.feature_tensor(modality), dim=1)
            self.register_buffer(f"features_{modality}", table, persistent=False)
            self.dense[modality] = xavier_linear(table.shape[1], d, self.device)
        fused = d * (len(self.modalities) + 1)
        self.embedding_item_after_GCN = xavier_linear(fused, d, self.device)
        self.embedding_user_after_GCN = xavier_linear(fused, d, self.device)
        # FAC heads (MMRec's g_*): ID -> ID+image, then -> +audio (absent) -> +text
        self.g_i_iv = xavier_linear(d, d, self.device)
        if "image" in self.modalities:
            self.g_v_iv = xavier_linear(d, d, self.device)
        if "text" in self.modalities:
            self.g_iv_iva = xavier_linear(d, d, self.device)
            self.g_iva_ivat = xavier_linear(d, d // 2, self.device)
            self.g_t_ivat = xavier_linear(d, d // 2, self.device)
        self.propagation = BipartitePropagation(
            symmetric_bipartite_adjacency(data.train_matrix()), self.n_users, self.device)

    def features(self, modality: str) -> torch.Tensor:
        return getattr(self, f"features_{modality}")

    def ego_views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer 0 of every view side by side: users [u, u, ...], items [ID, image, text]."""
        users = self.embedding_user.weight
        items = [self.embedding_item.weight]
        items += [self.dense[m](self.features(m)) for m in self.modalities]
        return users.repeat(1, len(items)), torch.cat(items, dim=1)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users, items): every view's LightGCN mean, side by side, at every node."""
        return lightgcn_layer_mean(self.propagation, self.ego_views(), self.config.n_layers)

    def batch_views(self, user_rows: torch.Tensor, item_rows: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`propagate()` at distinct rows, the last layer computed there only."""
        n_layers = self.config.n_layers
        user_sum, item_sum = lightgcn_layer_sum_at(self.propagation, self.ego_views(),
                                                   n_layers, (user_rows, item_rows),
                                                   fused_backward=True)
        return user_sum / (n_layers + 1), item_sum / (n_layers + 1)

    def fac(self, item_views: torch.Tensor) -> torch.Tensor:
        """MMRec's `fac` on rows of the concatenated item views."""
        d = self.config.embedding_size
        view = dict(zip(("id", *self.modalities), item_views.split(d, dim=1)))
        labels = torch.arange(len(item_views), device=item_views.device)
        x_i_iv = self.g_i_iv(view["id"])
        loss = item_views.new_zeros(())
        if "image" in view:
            logits = x_i_iv @ self.g_v_iv(view["image"]).T / self.config.ssl_temp
            loss = loss + F.cross_entropy(logits, labels)
        if "text" in view:
            x_iva_ivat = self.g_iva_ivat(self.g_iv_iva(x_i_iv))
            logits = x_iva_ivat @ self.g_t_ivat(view["text"]).T / self.config.ssl_temp
            loss = loss + F.cross_entropy(logits, labels)
        return loss

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        user_rows, user_at = torch.unique(users, return_inverse=True)
        item_rows, item_at = torch.unique(pos_items, return_inverse=True)
        user_views, item_views = self.batch_views(user_rows, item_rows)
        # row-wise maps on the distinct rows, then read at the batch (same values)
        user_e = self.embedding_user_after_GCN(user_views)[user_at]
        item_e = self.embedding_item_after_GCN(item_views)[item_at]
        return {"infonce": one_way_info_nce(user_e, item_e, self.config.temp),
                "fac": self.config.ssl_alpha * self.fac(item_views[item_at])}

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self.propagate()
        return self.embedding_user_after_GCN(users), self.embedding_item_after_GCN(items)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self.scoring_state()
        return dot_scores(user_all[users], item_all)
