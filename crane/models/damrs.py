"""DA-MRS (Xv et al., KDD 2024): denoising and aligning multi-modal content and user feedback,
on a LightGCN backbone.

Paper: *Improving Multi-modal Recommender Systems by Denoising and Aligning Multi-modal
Content and User Feedback*. Reference: enoche/MMRec `src/models/damrs.py` with its
`src/configs/model/DAMRS.yaml` (the same code as the authors' XMUDM/DA-MRS
`src/models/lightgcn.py`); the item-item behaviour graph from the authors'
`build_iib_graph.py` (crane/graphs/item_co_interaction.py).

Backbone: LightGCN, the only one the reference builds. Its config reads a `cf_model` key that
no line uses; the authors' DA-MRS+MFBPR lives in another file (their `src/models/mfbpr.py`),
and DA-MRS+LightGCN is the paper's best variant and the one with published logs (Recall@20
Baby .0994, Sports .1125, Clothing .0963, the authors' log_files/Main_results_log).

As the reference:

- users and items: ID tables (xavier uniform); LightGCN's mean over layers 0..`n_ui_layers`
  of the normalised user-item graph gives u and i.
- item views, frozen before training, each propagating the item ID table `n_mm_layers`
  times: h_text and h_image over the denoised modality kNN graphs, h_session over the
  item-item behaviour graph (`co_interaction_k` top items sharing at least 2 training users,
  plus a self loop; the counts are not read: the reference normalises the binary pattern).
- denoised kNN graphs (`masked_knn_graphs`): cosine similarities S_image, S_text of the raw
  features; every entry below its matrix's mean in either modality is set to 0 in both; per
  item, n = the nonzeros of its masked text row; the item keeps the top min(n, k) of each
  masked row (itself included), k = `masked_knn_k`. Every graph here (kNN and behaviour) is
  normalised as the reference's `compute_normalized_laplacian`: entry (i, j) =
  (r_i + 1e-7)^-1/2 (r_j + 1e-7)^-1/2, r the row's entry count.
- score: u . (i + mean of the views); loss over a batch, with B the batch's distinct items
  and its distinct users:
  - BPR weighted per triple: -mean(w+ log s(x+ - x-) + w- log s(x- - x+)), the weights from
    the sigmoid of u . normalize(h_view) for each view, without gradient: w+ = mean * exp(-var)^2
    over the views of the positive item, w- = max - m over them where their mean is below m,
    the mean over every view of every negative of the batch (one number), else 0; both clamped
    to [0, 1];
  - neighbour discrimination (`neighbor_weight`), the mean over views of: for each item of B,
    pseudo-positives = top 10 of p_other1 + p_other2 + 2 p_view (p: softmax of the cosines
    of the item to every item in a view; no gradient flows through them), then the top 10 of
    p_view without those; -log(sum_pos exp(c / 0.2) / sum_all + 1e-9) - log(sum_single /
    (sum_all - sum_pos) + 1e-9), c the cosines in the view;
  - alignment (`kl_weight`): the mean over (user, item) pairs of B of KL(p_g || p_c) +
    KL(p_c || p_g), p_g = s(u . normalize(i)), p_c = s(u . normalize(mean of the views)).

Deliberate differences:

- No dense N x N object: the kNN graphs are built in blocks of rows (`masked_knn_graphs`);
  the mean of each similarity matrix is ||sum of unit rows||^2 / N^2, exact, in float64. The
  first min(n, knn_k) entries of a row's top knn_k are taken for the reference's top n (the
  same entries: a row's masked-in values outrank its zeros when they are positive; with a
  negative mean similarity, the order among zeros and negatives is torch.topk's in both).
  A feature row of zeros gets cosine 0 to every item (the reference divides by its norm, 0).
- The behaviour graph is sparse (R^T R in blocks of items); a tie at the k-th place goes to
  the smaller item id (torch.topk leaves it unspecified).
- The symmetric KL of two Bernoulli distributions is written (p_g - p_c)(x_g - x_c), x the
  logits: the same value as the reference's four logarithms, which turn into NaN once a
  sigmoid rounds to 1 in float32. The weighted BPR uses logsigmoid (the reference's
  log(sigmoid) underflows to -inf). The sum over all items of the discrimination loss runs
  through `log_sum_exp_of_product` (one B x N buffer instead of autograd's three).
- The reference's `knn_k` is called `masked_knn_k`: a `knn_k` hyper-parameter tells the
  graph planner (crane/graphs/plan.py) that the model reads the cached top-k cosine graphs,
  and this masked graph is not one of them (it is computed in memory for each run).
- One modality: the views are that modality's and the behaviour one (the reference needs
  both); the kNN mask then reads that modality only and its row sets n; the pseudo-positives
  of a view come from the other view plus its own twice, the weights' variance is over two.
- Left out, because no loss or score reads them: image_trs, text_trs (and feat_embed_dim),
  reg_weight, lambda_coeff and cf_model (read by the reference, never used).
- The loss reads LightGCN's output at the batch's users and items only, so the last
  user-item layer is computed at those rows (the same values; tests/models/test_damrs.py
  compares the loss with the reference's full propagation). A_hat gives isolated nodes a zero
  row (MMRec adds 1e-7 to every degree), and LightGCN's layer mean is a sum divided by L + 1
  (MMRec stacks and averages).
- MMRec's trainer evaluates the test split every epoch and reports the grid point with the
  best test score; here the epoch and the point are selected on validation and the test split
  is scored once (docs/training.md).

Memory: the user-item graph 2E nonzeros, each kNN graph at most N masked_knn_k, the behaviour graph
N (co_interaction_k + 1); building the kNN graphs holds one block of rows x N similarities per
modality; a batch holds a few |B| x N matrices (the softmax pseudo-labels of each view and one
exponential buffer per view), |B| <= 2 x batch size. No N x N or U x U object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from crane.graphs.item_co_interaction import (item_co_interaction_graph, row_count_normalised,
                                              self_looped_co_interaction_graph)
from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.ops.contrastive import log_sum_exp_of_product
from crane.ops.propagation import (BipartitePropagation, SquareGraph, lightgcn_layer_mean,
                                   lightgcn_layer_sum_at)
from crane.ops.scores import dot_scores
from crane.ops.sparse import to_torch_sparse

PSEUDO_POSITIVES = 10  # the reference's topk(..., 10) in generate_pesudo_labels
TEMPERATURE = 0.2  # neighbor_discrimination's default, the one the reference uses
VIEW_ORDER = ("text", "image", "session")  # the reference's order of h_t, h_v, h_s
KNN_BLOCK_ROWS = 1024


@dataclass(frozen=True)
class DAMRSConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    masked_knn_k: int = hparam(at_least=1)
    n_mm_layers: int = hparam(at_least=0)
    n_ui_layers: int = hparam(at_least=0)
    co_interaction_k: int = hparam(at_least=1)
    kl_weight: float = hparam(at_least=0)
    neighbor_weight: float = hparam(at_least=0)


@register("damrs")
class DAMRS(Recommender):
    config_class = DAMRSConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        if self.n_items < PSEUDO_POSITIVES:
            raise ValueError(f"damrs needs at least {PSEUDO_POSITIVES} items (its neighbour "
                             f"discrimination takes {PSEUDO_POSITIVES} pseudo-positives per "
                             f"item); the data has {self.n_items}")
        size = self.config.embedding_size
        modalities = self.feature_modalities(data)
        self.user_embedding = nn.Embedding(self.n_users, size, device=self.device)
        self.item_id_embedding = nn.Embedding(self.n_items, size, device=self.device)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        train = data.train_matrix()
        self.propagation = BipartitePropagation(symmetric_bipartite_adjacency(train),
                                                self.n_users, self.device)
        features = {m: data.feature_tensor(m) for m in modalities}
        graphs = masked_knn_graphs(features, self.config.masked_knn_k)
        graphs["session"] = self_looped_co_interaction_graph(
            item_co_interaction_graph(train, self.config.co_interaction_k))
        self.views = {name: SquareGraph(to_torch_sparse(graphs[name], self.device),
                                        to_torch_sparse(graphs[name].T, self.device))
                      for name in VIEW_ORDER if name in graphs}

    # ----------------------------------------------------------------- representations

    def ego_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_embedding.weight, self.item_id_embedding.weight

    def view_embeddings(self) -> dict[str, torch.Tensor]:
        """h of every view: the item ID table propagated n_mm_layers times over its graph."""
        views = {}
        for name, graph in self.views.items():
            h = self.item_id_embedding.weight
            for _ in range(self.config.n_mm_layers):
                h = graph(h)
            views[name] = h
        return views

    @staticmethod
    def content(views: dict[str, torch.Tensor]) -> torch.Tensor:
        """The mean of the views (the reference's (h_t + h_v + h_s) / 3)."""
        return sum(views.values()) / len(views)

    # ----------------------------------------------------------------- loss

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        user_rows, user_at = torch.unique(users, return_inverse=True)
        item_rows, item_at = torch.unique(torch.cat([pos_items, neg_items]),
                                          return_inverse=True)
        layers = self.config.n_ui_layers + 1
        user_sum, item_sum = lightgcn_layer_sum_at(
            self.propagation, self.ego_embeddings(), self.config.n_ui_layers,
            (user_rows, item_rows), fused_backward=True)
        batch_users, batch_items = user_sum / layers, item_sum / layers  # u_id, i_id rows
        views = self.view_embeddings()
        content = self.content(views)

        user_e = batch_users[user_at]
        pos_at, neg_at = item_at.split(len(users))
        pos_e = batch_items[pos_at] + content[pos_items]
        neg_e = batch_items[neg_at] + content[neg_items]
        pos_weight, neg_weight = feedback_weights(user_e.detach(), views, pos_items, neg_items)
        difference = (user_e * pos_e).sum(dim=1) - (user_e * neg_e).sum(dim=1)
        terms = {"bpr": -(F.logsigmoid(difference) * pos_weight
                          + F.logsigmoid(-difference) * neg_weight).mean()}
        if self.config.neighbor_weight != 0:
            terms["neighbor"] = self.config.neighbor_weight * neighbour_discrimination_loss(
                views, item_rows)
        if self.config.kl_weight != 0:
            terms["kl"] = self.config.kl_weight * symmetric_bernoulli_kl(
                batch_users, batch_items, content[item_rows])
        return terms

    # ----------------------------------------------------------------- scoring

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = lightgcn_layer_mean(self.propagation, self.ego_embeddings(),
                                           self.config.n_ui_layers)
        return users, items + self.content(self.view_embeddings())

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self.scoring_state()
        return dot_scores(user_all[users], item_all)


# --------------------------------------------------------------------------- losses


def feedback_weights(user_e: torch.Tensor, views: dict[str, torch.Tensor],
                     pos_items: torch.Tensor, neg_items: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's get_weight_modal: per triple, the weight of the positive and of the
    negative BPR term, constants (no gradient)."""
    with torch.no_grad():
        def view_probabilities(items: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(torch.stack([
                (user_e * F.normalize(h[items], dim=-1)).sum(dim=1) for h in views.values()]))

        positive = view_probabilities(pos_items)  # (views, batch)
        negative_mean = view_probabilities(neg_items).mean()  # one number for the batch
        positive_mean = positive.mean(dim=0)
        pos_weight = (positive_mean * torch.exp(-positive.var(dim=0)).square()).clamp(0, 1)
        below = (positive_mean < negative_mean).to(positive.dtype)
        neg_weight = ((positive.max(dim=0).values - negative_mean) * below).clamp(0, 1)
    return pos_weight, neg_weight


def pseudo_positives(views: dict[str, torch.Tensor], item_rows: torch.Tensor
                     ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per view, (multi-modal, single-view) pseudo-positive item ids of the batch's items:
    the reference's label_prediction and generate_pesudo_labels (indices only: no gradient)."""
    with torch.no_grad():
        probabilities = {}
        for name, h in views.items():
            unit = F.normalize(h, dim=1)
            probabilities[name] = F.softmax(unit[item_rows] @ unit.T, dim=1)
        labels = {}
        for name, own in probabilities.items():
            positive = sum(p for other, p in probabilities.items() if other != name)
            positive = positive + own + own
            multi = torch.topk(positive, PSEUDO_POSITIVES, dim=-1).indices
            rest = own.clone().scatter_(1, multi, 0)
            labels[name] = (multi, torch.topk(rest, PSEUDO_POSITIVES, dim=-1).indices)
    return labels


def neighbour_discrimination_loss(views: dict[str, torch.Tensor],
                                  item_rows: torch.Tensor) -> torch.Tensor:
    """The mean over views of the reference's neighbor_discrimination at the batch's items."""
    labels = pseudo_positives(views, item_rows)
    total = 0.0
    for name, h in views.items():
        multi, single = labels[name]
        unit = F.normalize(h, dim=1)
        anchor = unit[item_rows]

        def exp_sum(ids: torch.Tensor) -> torch.Tensor:
            return torch.exp((anchor.unsqueeze(1) * unit[ids]).sum(dim=2) / TEMPERATURE).sum(1)

        multi_score, single_score = exp_sum(multi), exp_sum(single)
        everything = torch.exp(log_sum_exp_of_product(anchor / TEMPERATURE, unit))
        loss = (-torch.log(multi_score / everything + 1e-9)
                - torch.log(single_score / (everything - multi_score) + 1e-9))
        total = total + loss.mean()
    return total / len(views)


def symmetric_bernoulli_kl(users: torch.Tensor, items: torch.Tensor,
                           content: torch.Tensor) -> torch.Tensor:
    """mean of KL(p_g || p_c) + KL(p_c || p_g) over every (user, item) pair, p = sigmoid(x),
    x_g = u . normalize(item), x_c = u . normalize(content): (p_g - p_c)(x_g - x_c)."""
    logits_g = users @ F.normalize(items, dim=-1).T
    logits_c = users @ F.normalize(content, dim=-1).T
    return ((torch.sigmoid(logits_g) - torch.sigmoid(logits_c)) * (logits_g - logits_c)).mean()


# --------------------------------------------------------------------------- item graphs


def masked_knn_graphs(features: dict[str, torch.Tensor], knn_k: int,
                      block_rows: int = KNN_BLOCK_ROWS) -> dict[str, sp.csr_matrix]:
    """The reference's get_knn_adj_mat, in blocks of rows: per modality, the normalised
    top-min(n, knn_k) graph of the cosine similarities masked by every modality's mean
    (n: the nonzeros of the item's masked text row, or of its only modality's row)."""
    if block_rows < 1:
        raise ValueError(f"masked_knn_graphs: block_rows={block_rows} must be >= 1")
    with torch.no_grad():
        unit = {m: x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
                for m, x in features.items()}
        n_items = next(iter(unit.values())).shape[0]
        means = {m: float(u.double().sum(dim=0).square().sum()) / n_items ** 2
                 for m, u in unit.items()}
        counting = "text" if "text" in unit else next(iter(unit))
        k = min(knn_k, n_items)
        rows = {m: [] for m in unit}
        cols = {m: [] for m in unit}
        for start in range(0, n_items, block_rows):
            sims = {m: u[start:start + block_rows] @ u.T for m, u in unit.items()}
            masked = torch.zeros_like(sims[counting], dtype=torch.bool)
            for m, sim in sims.items():
                masked |= sim < means[m]
            for sim in sims.values():
                sim[masked] = 0
            kept = torch.count_nonzero(sims[counting], dim=1).clamp(max=k)
            in_row = torch.arange(k, device=kept.device) < kept[:, None]
            row_ids = torch.arange(start, start + len(kept), device=kept.device)
            for m, sim in sims.items():
                top = torch.topk(sim, k, dim=1).indices
                rows[m].append(row_ids[:, None].expand(-1, k)[in_row].cpu())
                cols[m].append(top[in_row].cpu())
        return {m: row_count_normalised(torch.cat(rows[m]).numpy(), torch.cat(cols[m]).numpy(),
                                        n_items) for m in unit}
