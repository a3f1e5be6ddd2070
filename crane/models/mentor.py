"""MENTOR (Xu et al., AAAI 2025): multi-level self-supervised learning for multimodal
recommendation.

Paper: Xu, Chen, Yang, Li, Wang, Ngai, *MENTOR: Multi-level Self-supervised Learning for
Multimodal Recommendation*, AAAI 2025 (arXiv 2402.19407). Reference: the authors'
Jinfeng-Xu/MENTOR `src/models/mentor.py` with `src/configs/model/MENTOR.yaml` and
`src/configs/overall.yaml` (an MMRec fork; its GCN is MMRec's DualGNN/DRAGON GCN).

As the reference, at every batch over the whole graph:

- per modality (image, text) a GCN over the normalised user-item graph A: input [preference;
  MLP_1(leaky_relu(MLP(features)))] (a trained user table next to the projected raw item
  features, rows L2-normalised), output x + A x + A^2 x (`PreferenceGCN`, as DRAGON); an ID
  GCN of the same form reads a trained item table `id_feat` instead of features.
- four more GCNs of that form (image and text, twice: views n1 and n2), each with its own
  parameters, perturbed after each hop as SimGCL: h + sign(h) * normalize(U[0, 1) noise) *
  0.1, the noise drawn over all U + N rows from torch's global generator.
- views, users | items: main [w_u0 image_u, w_u1 text_u] | [image_i, text_i] (weight_u
  trained, softmax at initialisation); guide [id_u, id_u] | [id_i, id_i]; visual [image,
  image]; textual [text, text]; n1 and n2 like main from their noisy GCNs. Every view's items
  add `n_mm_layers` products with the frozen item graph mm_image_weight * A_image + (1 -
  mm_image_weight) * A_text, each the binary top-`knn_k` cosine graph of the raw features
  (entries 1/k, as FREEDOM's).
- loss: -mean log2 sigmoid(s_pos - s_neg) of the main view + reg_weight * (mean image and
  text preference^2 over the batch's users) + reg_weight * mean weight_u^2
  + align_weight * sum over the six pairs of the main, guide, visual and textual views of
  |var - var'| + |mean - mean'| (over all entries of each view's user and item table,
  unbiased variance) + mask_weight_g * (InfoNCE(n1 users, n2 users) + InfoNCE(n1 items, n2
  items)) at temperature `temp`, over all users and all items
  + mask_weight_f * (2 - cos(dropout(main), mlp(main)) averaged over items, then users).
- scores: main users . main items.

The feature-masking term (`mask_f`) is computed, as in the reference, entirely under
torch.no_grad: it adds its value to the loss and nothing to any gradient, and its `mlp` is a
Linear that never changes (here a frozen Linear, in the state dict; the reference's is a
parameter without gradient). It is kept so that the loss equals the reference's.

Deliberate differences (tests/models/test_mentor.py compares loss, gradients and scores with a
transcription of the reference):

- Left out, because nothing the loss or the scores read depends on them: the user-user graph
  (the reference loads `user_graph_dict.npy` and resamples 40 neighbours per user before
  every epoch, `topk_sample`, but its forward never reads the sample), the trainable copies
  of the features (`image_embedding`, `text_embedding`; the GCNs read the raw features, so
  they are frozen inputs here) and their projections (`image_trs`, `text_trs`, hence
  `feat_embed_dim`), `weight_i`, `MLP_user`, `result_embed*`'s initial values, the item
  dropping (`edge_index_dropv/t`, which the GCN receives and never reads) and `n_layers` (the
  GCN always has two hops). `dim_latent`, 64 in its code, is `embedding_size` (64 in its
  config; the reference fails for any other value, its `mlp` being 2 * embedding_size wide).
- Both modalities are required (`required_modalities`): the reference calls the image and
  the text GCNs unconditionally, and its views and alignment are built on the pair.
- The log2-BPR is written with logsigmoid / ln 2 (the same value without underflow).
- The two InfoNCE terms over all users and all items use `crane.ops.blocked_info_nce` (row
  blocks of the logits, MENTOR's formula): no U x U or N x N matrix.
- The item-graph products of the six views are computed once, on the seven distinct
  (N x embedding_size) blocks they are made of (the same column-wise numbers).
- The noise is drawn on the model's device (the reference calls `.cuda()`), and the dropout
  masks of `mask_f` by `FastDropout` (torch.rand; the reference's F.dropout draws Bernoulli):
  the same distributions, other draws.
- With mask_weight_g == 0 the noisy GCNs, and with align_weight == 0 the ID GCN, are not
  created (the reference computes them and multiplies by 0); with mask_weight_f == 0 the
  constant term is not computed.
- The reference scores with `result_embed`, the last training batch's forward (parameters
  before the last optimizer step); here scores come from the current parameters.
- The reference's trainer selects epochs on Recall@10 (its overall.yaml), evaluates the test
  split every epoch and reports the grid point with the best test score; here the study's
  validation metric selects the point and the epoch and the test split is scored once
  (docs/training.md).

Memory: the user-item graph 2E nonzeros, the item graph at most 2 N knn_k; per GCN (seven of
them) activations of (U + N) x embedding_size per hop and N x 4 embedding_size for the MLP;
the views (U + N) x 2 embedding_size each; one InfoNCE block of
`crane.ops.blocked_info_nce.BLOCK_ELEMENTS` logits. No U x U or N x N object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.models.layers import PreferenceGCN, multimodal_knn_graph, softmax_pair_weights
from crane.ops.blocked_info_nce import blocked_one_way_info_nce
from crane.ops.dropout import FastDropout
from crane.ops.losses import logsigmoid_bpr_loss
from crane.ops.propagation import BipartitePropagation, SquareGraph
from crane.ops.scores import dot_scores
from crane.ops.sparse import to_torch_sparse

NOISE_SCALE = 0.1            # the reference's SimGCL perturbation: sign(h) * unit noise * 0.1
NOISY_VIEWS = ("n1", "n2")   # the two perturbed views contrasted by mask_g
BOTH_MODALITIES = ("image", "text")  # the views are built on the pair

Pair = tuple[torch.Tensor, torch.Tensor]  # (users, items)


@dataclass(frozen=True)
class MENTORConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    knn_k: int = hparam(at_least=1)
    mm_image_weight: float = hparam(at_least=0, at_most=1)
    n_mm_layers: int = hparam(at_least=0)
    reg_weight: float = hparam(at_least=0)
    dropout: float = hparam(at_least=0, below=1)
    mask_weight_f: float = hparam(at_least=0)
    mask_weight_g: float = hparam(at_least=0)
    align_weight: float = hparam(at_least=0)
    temp: float = hparam(above=0)


def perturbed(layer: Pair, n_users: int) -> Pair:
    """h + sign(h) * normalize(noise) * 0.1, one U[0, 1) draw over all U + N rows."""
    users, items = layer
    noise = torch.rand(n_users + items.shape[0], users.shape[1], device=users.device)
    user_noise, item_noise = F.normalize(noise, dim=-1).split([n_users, items.shape[0]])
    return (users + torch.sign(users) * user_noise * NOISE_SCALE,
            items + torch.sign(items) * item_noise * NOISE_SCALE)


def noisy_gcn(gcn: PreferenceGCN, features: torch.Tensor,
              graph: BipartitePropagation) -> Pair:
    """The reference's GCN with perturbed=True: x + h + h_1, h and h_1 perturbed after their
    hop (h_1 propagates the perturbed h)."""
    items = gcn.mlp_1(F.leaky_relu(gcn.mlp(features)))
    x = (F.normalize(gcn.preference), F.normalize(items))
    n_users = x[0].shape[0]
    h = perturbed(graph(x), n_users)
    h_1 = perturbed(graph(h), n_users)
    return x[0] + h[0] + h_1[0], x[1] + h[1] + h_1[1]


def gaussian_fit(view: Pair) -> tuple[torch.Tensor, torch.Tensor]:
    """(unbiased variance, mean) over every entry of the view's [users; items] table."""
    table = torch.cat(view, dim=0)
    return torch.var(table), torch.mean(table)


@register("mentor")
class MENTOR(Recommender):
    config_class = MENTORConfig
    uses_content = True
    required_modalities = BOTH_MODALITIES

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        cfg = self.config
        size = cfg.embedding_size
        self.modalities = self.feature_modalities(data)
        self.gcns = nn.ModuleDict()
        for modality in self.modalities:
            table = data.feature_tensor(modality)
            self.register_buffer(f"features_{modality}", table, persistent=False)
            self.gcns[modality] = PreferenceGCN(self.n_users, table.shape[1], size, self.device)
        self.noisy_gcns = nn.ModuleDict()
        if cfg.mask_weight_g != 0:
            for view in NOISY_VIEWS:
                for modality in self.modalities:
                    width = self.features(modality).shape[1]
                    self.noisy_gcns[f"{modality}_{view}"] = PreferenceGCN(
                        self.n_users, width, size, self.device)
        if cfg.align_weight != 0:
            self.id_feat = nn.Parameter(
                nn.init.xavier_normal_(torch.empty(self.n_items, size, device=self.device)))
            self.id_gcn = PreferenceGCN(self.n_users, size, size, self.device)
        self.weight_u = softmax_pair_weights(self.n_users, self.device)
        # used under no_grad only (the mask_f term): a Linear that never changes
        self.mlp = nn.Linear(2 * size, 2 * size, device=self.device).requires_grad_(False)
        self.feature_dropout = FastDropout(cfg.dropout)

        train = data.train_matrix()
        self.graph = BipartitePropagation(symmetric_bipartite_adjacency(train), self.n_users,
                                          self.device)
        item_graph = multimodal_knn_graph(data, self.modalities, cfg.knn_k, cfg.mm_image_weight)
        self.item_graph = SquareGraph(to_torch_sparse(item_graph, self.device),
                                      to_torch_sparse(item_graph.T, self.device))

    def features(self, modality: str) -> torch.Tensor:
        return getattr(self, f"features_{modality}")

    # ----------------------------------------------------------------- views

    def item_graph_products(self, blocks: list[torch.Tensor]) -> list[torch.Tensor]:
        """`n_mm_layers` item-graph products of each (N x d) block, in one product per layer."""
        h = torch.cat(blocks, dim=1)
        for _ in range(self.config.n_mm_layers):
            h = self.item_graph(h)
        return list(h.split([b.shape[1] for b in blocks], dim=1))

    def weighted_users(self, image_users: torch.Tensor, text_users: torch.Tensor
                       ) -> torch.Tensor:
        return torch.cat([image_users * self.weight_u[:, 0], text_users * self.weight_u[:, 1]],
                         dim=1)

    def gcn_outputs(self, noisy: bool) -> dict[str, Pair]:
        """Every GCN's (users, items): the modalities' and, for the loss, the ID GCN's and the
        noisy ones' (drawn in the reference's order: image n1, text n1, image n2, text n2)."""
        outputs = {m: self.gcns[m](self.features(m), self.graph) for m in self.modalities}
        if noisy:
            if self.config.align_weight != 0:
                outputs["id"] = self.id_gcn(self.id_feat, self.graph)
            for name, gcn in self.noisy_gcns.items():
                outputs[name] = noisy_gcn(gcn, self.features(name.split("_")[0]), self.graph)
        return outputs

    def views(self, noisy: bool) -> dict[str, Pair]:
        """The reference's result_embed views (main; with `noisy` also guide, visual, textual,
        n1, n2 as they are in use) as (users, items), the items after the item graph."""
        outputs = self.gcn_outputs(noisy)
        names = list(outputs)
        smoothed = dict(zip(names, self.item_graph_products([outputs[n][1] for n in names])))

        def items(*parts: str) -> torch.Tensor:
            return (torch.cat([outputs[p][1] for p in parts], dim=1)
                    + torch.cat([smoothed[p] for p in parts], dim=1))

        image, text = outputs["image"][0], outputs["text"][0]
        views = {"main": (self.weighted_users(image, text), items("image", "text"))}
        if not noisy:
            return views
        if "id" in outputs:
            views["guide"] = (torch.cat([outputs["id"][0]] * 2, dim=1), items("id", "id"))
            views["visual"] = (torch.cat([image, image], dim=1), items("image", "image"))
            views["textual"] = (torch.cat([text, text], dim=1), items("text", "text"))
        if self.noisy_gcns:
            for view in NOISY_VIEWS:
                image_v, text_v = f"image_{view}", f"text_{view}"
                views[view] = (self.weighted_users(outputs[image_v][0], outputs[text_v][0]),
                               items(image_v, text_v))
        return views

    # ----------------------------------------------------------------- loss

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if neg_items is None:
            raise ValueError("mentor trains on (user, positive, negative) triples; got no "
                             "negatives")
        cfg = self.config
        views = self.views(noisy=True)
        main_users, main_items = views["main"]
        bpr = logsigmoid_bpr_loss(main_users[users], main_items[pos_items],
                                  main_items[neg_items]) / math.log(2.0)
        preference = sum(self.gcns[m].preference[users].square().mean()
                         for m in self.modalities)
        reg = cfg.reg_weight * preference + cfg.reg_weight * self.weight_u.square().mean()
        terms = {"bpr": bpr, "reg": reg}
        if cfg.mask_weight_f != 0:
            terms["mask_f"] = cfg.mask_weight_f * self.feature_masking(main_users, main_items)
        if cfg.align_weight != 0:
            terms["align"] = cfg.align_weight * self.alignment(views)
        if cfg.mask_weight_g != 0:
            (users_1, items_1), (users_2, items_2) = views["n1"], views["n2"]
            terms["mask_g"] = cfg.mask_weight_g * (
                blocked_one_way_info_nce(users_1, users_2, cfg.temp)
                + blocked_one_way_info_nce(items_1, items_2, cfg.temp))
        return terms

    def feature_masking(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The reference's mask_f_loss / mask_weight_f, a constant: 1 - mean cos(dropout(x),
        mlp(x)) for items plus the same for users, all under no_grad."""
        with torch.no_grad():
            users, items = users.detach(), items.detach()
            users_mlp, items_mlp = self.mlp(users), self.mlp(items)
            users_drop, items_drop = self.feature_dropout(users), self.feature_dropout(items)
            return ((1 - F.cosine_similarity(items_drop, items_mlp).mean())
                    + (1 - F.cosine_similarity(users_drop, users_mlp).mean()))

    def alignment(self, views: dict[str, Pair]) -> torch.Tensor:
        """|var - var'| + |mean - mean'| over the six pairs of the main (r), guide (g), visual
        (v) and textual (t) views, in the reference's order g-r, g-v, g-t, r-v, r-t, v-t."""
        fitted = {name: gaussian_fit(views[name])
                  for name in ("main", "guide", "visual", "textual")}
        pairs = [("guide", "main"), ("guide", "visual"), ("guide", "textual"),
                 ("main", "visual"), ("main", "textual"), ("visual", "textual")]
        total = 0.0
        for first, second in pairs:
            (var_1, mean_1), (var_2, mean_2) = fitted[first], fitted[second]
            total = total + (torch.abs(var_1 - var_2) + torch.abs(mean_1 - mean_2))
        return total

    # ----------------------------------------------------------------- scoring

    def scoring_tables(self) -> Pair:
        return self.views(noisy=False)["main"]

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self.scoring_state()
        return dot_scores(user_all[users], item_all)
