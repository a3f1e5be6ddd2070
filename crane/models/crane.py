"""CRANE: Cross-modal Recursive Attention Network with dual graph Embedding (reconstructed).

Dai et al., arXiv 2601.11151. Only the paper's abstract, introduction and architecture figure
could be read, and the authors' public code is an early prototype; so this is the
reconstruction specified in docs/crane-method.md, section by section (what comes from the
paper, the prototype/MMRec and our own design is listed in docs/crane-model.md):

1. modality projection x_i^m = F_m[i] W_m + b_m (raw features frozen unless
   `trainable_features`; `input_dim` > 0 first reduces F_m to its leading principal
   components);
2. user multimodal profiles p_u^m = (D_u^-1 R X^m)_u (`profile_norm: sym`: D_u^-1/2 R
   D_i^-1/2), computed as norm R (F_m W_m + b_m), which equals the method's
   (norm R F_m) W_m + rowsum b_m without a U x D_m matrix (docs/crane-model.md, section 2);
3. RCA (crane.models.layers.RecursiveCrossModalAttention), the same weights for users
   (tokens p_u^m) and items (tokens x_i^m) -> z;
4. item-item kNN graph A_ii = a A_v + (1 - a) A_t of the raw features, s_i = (A_ii^L z)_i
   (`item_graph_source: refined` mixes in a kNN graph of z rebuilt every `refine_every`
   epochs);
5. LightGCN behavioural view b with FREEDOM's degree-sensitive edge dropout in training;
6. e_u = b_u + s_u (s_u = z_u), e_i = b_i + s_i, score = e_u . e_i;
7. InfoNCE between b and s for the batch's distinct users and distinct positive items;
8. loss = BPR + lambda_cl L_cl + reg_weight EmbLoss(layer-0 ID embeddings).
`variant: prototype` is the authors' prototype (FREEDOM + 2-token multi-head attention).

Efficiency: a training step computes z only for the batch's distinct users and for the items
the batch's positive/negative items reach in A_ii^L (row gathers of the CSR graph), projecting
the union of those items and of the users' training items once and fusing items and users in
one RCA pass; the behavioural view propagates the user-item graph as its two blocks R, R^T
(crane.ops.propagation) and takes the layer mean on the batch's rows only. Loss and gradients
equal those of computing everything (tests/models/test_crane.py checks it). Nothing N x N or
U x U is ever dense.

MMRec has no CRANE; the parts taken from its FREEDOM follow it (Xavier ID embeddings, 1/k
kNN rows, edge dropout with its 1e-7 degree guard). The evaluation graph is the shared
`symmetric_bipartite_adjacency`, which leaves MMRec's 1e-7 out of the degrees: below float32
resolution for any node with an edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from crane.ops.pca import principal_components
from crane.graphs.item_knn import KnnNeighbours, knn_mean_graph, top_k_cosine_neighbours
from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.models.layers import (ConcatFusion, PrototypeAttentionFusion,
                                 RecursiveCrossModalAttention, multimodal_knn_graph)
from crane.ops.contrastive import symmetric_info_nce
from crane.ops.dropout import BipartiteEdges, degree_sensitive_edge_dropout
from crane.ops.losses import dot_bpr_loss, emb_loss
from crane.ops.propagation import (BipartitePropagation, lightgcn_layer_mean,
                                   lightgcn_layer_sum_at)
from crane.ops.row_blocks import CsrGraph, multi_hop_blocks
from crane.ops.scores import dot_scores
from crane.ops.sparse import graph_mm

PROTOTYPE_HEADS = 4  # the prototype's nn.MultiheadAttention(d, 4)


@dataclass(frozen=True)
class CraneConfig(HyperParameters):
    """Every hyper-parameter of CRANE (defaults in the model's YAML, crane.yaml)."""

    embedding_size: int = hparam(at_least=1)
    input_dim: int = hparam(at_least=0)
    variant: str = hparam(one_of=("crane", "prototype"))
    fusion: str = hparam(one_of=("rca", "concat"))
    rca_steps: int = hparam(at_least=1)
    rca_shared_weights: bool = hparam()
    rca_dropout: float = hparam(at_least=0, below=1)
    trainable_features: bool = hparam()
    user_profiles: bool = hparam()
    profile_norm: str = hparam(one_of=("mean", "sym"))
    item_graph: bool = hparam()
    knn_k: int = hparam(at_least=1)
    image_weight: float = hparam(at_least=0, at_most=1)
    item_graph_layers: int = hparam(at_least=1)
    item_graph_source: str = hparam(one_of=("raw", "refined"))
    refine_every: int = hparam(at_least=1)
    refine_lambda: float = hparam(at_least=0, at_most=1)
    n_ui_layers: int = hparam(at_least=0)
    edge_drop_rate: float = hparam(at_least=0, below=1)
    normalize_semantic: bool = hparam()
    learn_semantic_scale: bool = hparam()
    semantic_ui_propagation: bool = hparam()
    lambda_cl: float = hparam(at_least=0)
    tau: float = hparam(above=0)
    cl_max_rows: int = hparam(at_least=0)
    reg_weight: float = hparam(at_least=0)
    neighbour_cache: bool = hparam()

    def check(self, model: str) -> None:
        if self.variant == "crane" and self.semantic_ui_propagation and not self.user_profiles:
            raise ValueError(f"{model}: semantic_ui_propagation: true would give users content "
                             "through the graph, contradicting user_profiles: false (ID-only "
                             "users); switch one of them")
        if self.neighbour_cache and self.variant == "crane" and self.semantic_ui_propagation:
            raise ValueError(f"{model}: neighbour_cache: true approximates the batch-only step, "
                             "which semantic_ui_propagation: true replaces by the full views; "
                             "switch one of them off")
        if self.neighbour_cache and self.trainable_features:
            raise ValueError(f"{model}: neighbour_cache: true precomputes the user profiles "
                             "from frozen features; trainable_features: true trains them")

    @property
    def uses_profiles(self) -> bool:
        return self.variant == "crane" and self.user_profiles

    @property
    def uses_ui_propagation(self) -> bool:
        return self.variant == "crane" and self.semantic_ui_propagation

    @property
    def uses_contrastive(self) -> bool:
        return self.variant == "crane" and self.lambda_cl > 0

    @property
    def uses_neighbour_cache(self) -> bool:
        return self.variant == "crane" and self.neighbour_cache


@dataclass
class _Views:
    """Behavioural (b) and semantic (s) representations of some users and items."""

    b_users: torch.Tensor
    b_items: torch.Tensor
    s_users: torch.Tensor | None  # None: users are ID-only
    s_items: torch.Tensor


@register("crane")
class Crane(Recommender):
    config_class = CraneConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        cfg = self.config
        self.modalities = self.feature_modalities(data)  # token order: image, text
        dim, n_mod = cfg.embedding_size, len(self.modalities)
        train = data.train_matrix()
        device = data.device

        # ID embeddings, Xavier-initialised as in MMRec (the behavioural view's layer 0).
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(
            torch.empty(data.n_users, dim, device=device)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(
            torch.empty(data.n_items, dim, device=device)))

        # 1. Features (frozen buffers, not checkpointed: they are inputs) and projections.
        self.retained_variance: dict[str, float] = {}
        inputs = {m: self._input_features(data, m) for m in self.modalities}
        for m in self.modalities:
            features = torch.as_tensor(inputs[m], dtype=torch.float32, device=device)
            if cfg.trainable_features:
                self.register_parameter(_feature_name(m), nn.Parameter(features.clone()))
            else:
                self.register_buffer(_feature_name(m), features, persistent=False)
        self.projections = nn.ModuleList(
            nn.Linear(inputs[m].shape[1], dim, device=device) for m in self.modalities)

        # 3. Fusion of the modality tokens.
        if cfg.variant == "prototype":
            self.fusion = PrototypeAttentionFusion(dim, n_mod, PROTOTYPE_HEADS)
        elif cfg.fusion == "rca":
            self.fusion = RecursiveCrossModalAttention(dim, n_mod, cfg.rca_steps,
                                                       cfg.rca_shared_weights, cfg.rca_dropout)
        else:
            self.fusion = ConcatFusion(dim, n_mod)
        self.fusion.to(device)

        # 6. [design] option: how much of each semantic view enters e = b + gamma s (users,
        # items), learned; the method adds s unweighted (gamma = 1).
        if cfg.learn_semantic_scale:
            # [users, items] with user profiles, [items] without (users have no s then)
            self.semantic_scale = nn.Parameter(torch.ones(2 if cfg.uses_profiles else 1,
                                                          device=device))

        # 2. User profiles: the normalised interaction matrix (D_u^-1 R or D_u^-1/2 R D_i^-1/2).
        if cfg.uses_profiles:
            profile = _profile_matrix(train, cfg.profile_norm)
            self._set_csr("profile_graph", profile)
            if cfg.uses_neighbour_cache:
                # [design, scale] p_u^m = (norm R F_m)_u W_m + rowsum_u b_m with the first
                # factor computed once (U x D_m per modality): a step projects no user's items.
                for m in self.modalities:
                    self.register_buffer(_profile_feature_name(m), torch.as_tensor(
                        profile @ inputs[m], dtype=torch.float32, device=device),
                        persistent=False)
                self.register_buffer("profile_rowsum", torch.as_tensor(
                    np.asarray(profile.sum(axis=1)), dtype=torch.float32, device=device),
                    persistent=False)

        # [design, scale] Historical neighbours: every item's z as of the epoch's start (eval
        # mode, no gradient); a step reads its out-of-batch item-graph neighbours from here.
        if cfg.uses_neighbour_cache and cfg.item_graph:
            self.register_buffer("z_cache", torch.zeros(data.n_items, dim, device=device),
                                 persistent=False)
        self._cl_generator: torch.Generator | None = None

        # 4. Item-item semantic graph from the raw features.
        if cfg.item_graph:
            self._raw_item_graph = multimodal_knn_graph(data, self.modalities, cfg.knn_k,
                                                        cfg.image_weight)
            if cfg.item_graph_source == "refined":
                self.register_buffer("refined_neighbours", torch.zeros(
                    (data.n_items, cfg.knn_k), dtype=torch.int64, device=device))
                self._refine_item_graph()
            else:
                self._set_csr("item_graph", self._raw_item_graph)

        # 5. User-item graph: full for evaluation, edge-dropped per epoch for training.
        self._edges = BipartiteEdges.from_matrix(train)
        self._full_graph = BipartitePropagation(symmetric_bipartite_adjacency(train),
                                                self.n_users, device)
        self._train_graph: BipartitePropagation | None = None

    # ----------------------------------------------------------------- construction helpers

    def _input_features(self, data: TrainData, modality: str) -> np.ndarray:
        """The modality's features as CRANE reads them: raw, or ([design, scale]
        `input_dim` > 0) on their `input_dim` leading principal components where the raw
        matrix is wider; the variance kept goes to the run's metrics.json."""
        raw = np.asarray(data.features[modality], dtype=np.float32)
        dim = self.config.input_dim
        if dim == 0 or raw.shape[1] <= dim or raw.shape[0] <= dim:
            return raw
        reduced = principal_components(raw, dim)
        self.retained_variance[modality] = reduced.retained_variance
        return reduced.features

    def run_info(self) -> dict[str, Any]:
        if not self.retained_variance:
            return {}
        return {"input_dim": self.config.input_dim,
                "retained_variance": dict(self.retained_variance)}

    def _set_csr(self, prefix: str, matrix: sp.spmatrix) -> None:
        graph = CsrGraph.from_scipy(matrix, self.user_embedding.device)
        for part in ("crow", "col", "val"):
            self.register_buffer(f"{prefix}_{part}", getattr(graph, part), persistent=False)
        setattr(self, f"_{prefix}_shape", graph.shape)

    def _csr(self, prefix: str) -> CsrGraph:
        return CsrGraph(getattr(self, f"{prefix}_crow"), getattr(self, f"{prefix}_col"),
                        getattr(self, f"{prefix}_val"), getattr(self, f"_{prefix}_shape"))

    def _sparse(self, prefix: str) -> torch.Tensor:
        return self._csr(prefix).to_torch()

    # ----------------------------------------------------------------- refined item graph

    @torch.no_grad()
    def _all_items_z(self) -> torch.Tensor:
        """Every item's z in eval mode (no RCA dropout), without gradient."""
        was_training = self.training
        self.eval()
        z = self._fuse(self._item_tokens(None))
        self.train(was_training)
        return z

    def _refine_item_graph(self) -> None:
        """Rebuild the kNN graph of z (eval mode, no gradient) and mix it into A_ii."""
        z = self._all_items_z()
        neighbours = top_k_cosine_neighbours(z, self.config.knn_k, device=z.device)
        self.refined_neighbours.copy_(torch.as_tensor(neighbours.indices))
        self._mix_refined_graph()

    def _mix_refined_graph(self) -> None:
        """lambda A_raw + (1 - lambda) A_z, A_z from the `refined_neighbours` buffer (which a
        checkpoint restores, so a loaded model scores with the graph it was trained with)."""
        indices = self.refined_neighbours.cpu().numpy()
        refined = knn_mean_graph(KnnNeighbours(indices, np.zeros(indices.shape, np.float32)),
                                 self.n_items)
        lam = self.config.refine_lambda
        self._set_csr("item_graph", (lam * self._raw_item_graph + (1.0 - lam) * refined).tocsr())

    # ----------------------------------------------------------------- representations

    def _item_tokens(self, items: torch.Tensor | None) -> torch.Tensor:
        """Projected modality tokens [x_i^1, ..., x_i^M] of `items` (None: all): (n, M d)."""
        return torch.cat([projection(getattr(self, _feature_name(m)) if items is None
                                     else getattr(self, _feature_name(m))[items])
                          for m, projection in zip(self.modalities, self.projections)], dim=1)

    def _token_table(self, needed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens covering the sorted item ids `needed`, and how to look ids up in them.

        When a step needs most items, every row is projected (no n x D gather copy of the raw
        features) and looked up by item id; otherwise only `needed` is, looked up through a
        binary search. Returns (tokens, needed or None for "row = item id").
        """
        if 2 * len(needed) > self.n_items:
            return self._item_tokens(None), None
        return self._item_tokens(needed), needed

    def _fuse(self, flat_tokens: torch.Tensor) -> torch.Tensor:
        """z of entities given their (n, M d) tokens."""
        n = flat_tokens.shape[0]
        return self.fusion(flat_tokens.view(n, len(self.modalities), -1).transpose(0, 1)
                           .contiguous())

    def _ego(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_embedding, self.item_embedding

    def _batch_behavioural(self, graph: BipartitePropagation, users: torch.Tensor,
                           items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """b of the distinct `users` and `items`: layers 0..L-1 over the whole graph, layer L
        (which nothing else reads) at these rows only; the same values as the full mean."""
        layers = self.config.n_ui_layers + 1
        user_sum, item_sum = lightgcn_layer_sum_at(graph, self._ego(), layers - 1,
                                                   (users, items))
        return user_sum / layers, item_sum / layers

    def _full_views(self, graph: BipartitePropagation) -> _Views:
        """Every user's and item's views (evaluation, and the reference for batch views)."""
        cfg = self.config
        b_users, b_items = lightgcn_layer_mean(graph, self._ego(), cfg.n_ui_layers)
        tokens = self._item_tokens(None)
        z_items = s_items = self._fuse(tokens)
        if cfg.item_graph:
            item_graph = self._sparse("item_graph")
            for _ in range(cfg.item_graph_layers):
                s_items = graph_mm(item_graph, s_items)
        s_users = None
        if cfg.uses_profiles:
            # p_u^m = (norm R X^m)_u, which equals (norm R F_m)_u W_m + rowsum_u b_m
            s_users = self._fuse(graph_mm(self._sparse("profile_graph"), tokens))
        if cfg.uses_ui_propagation:
            # Option: also spread [z_U; z_I] over the user-item graph, mean of layers 1..L.
            spread_users, spread_items = s_users, z_items
            total_users, total_items = 0.0, 0.0
            for _ in range(cfg.n_ui_layers):
                spread_users, spread_items = graph.step(spread_users, spread_items)
                total_users, total_items = total_users + spread_users, total_items + spread_items
            if cfg.n_ui_layers:
                s_users = s_users + total_users / cfg.n_ui_layers
                s_items = s_items + total_items / cfg.n_ui_layers
        return _Views(b_users, b_items, s_users, s_items)

    def _batch_views(self, graph: BipartitePropagation, users: torch.Tensor,
                     items: torch.Tensor) -> _Views:
        """Views of the distinct `users` and `items` only (both sorted, unique).

        z is computed for the items that `items` reach in A_ii^L and for `users` (whose
        profile tokens come from the projected tokens of their training items) in one fusion
        pass, from one projection of the union of the items both need.
        """
        cfg = self.config
        b_users, b_items = self._batch_behavioural(graph, users, items)
        blocks = (multi_hop_blocks(self._csr("item_graph"), items, cfg.item_graph_layers)
                  if cfg.item_graph else [])
        graph_items = blocks[-1].columns if blocks else items
        profiles = self._csr("profile_graph").rows(users) if cfg.uses_profiles else None
        needed = (graph_items if profiles is None
                  else torch.unique(torch.cat([graph_items, profiles.columns])))
        tokens, ids = self._token_table(needed)

        def lookup(wanted: torch.Tensor) -> torch.Tensor:
            if ids is None:
                return tokens[wanted]
            return tokens if wanted is ids else tokens[torch.searchsorted(ids, wanted)]

        item_tokens = lookup(graph_items)
        s_users = None
        if profiles is None:
            s_items = self._fuse(item_tokens)
        else:
            user_tokens = profiles.propagate(lookup(profiles.columns))
            s_items, s_users = self._fuse(torch.cat([item_tokens, user_tokens])).split(
                [len(graph_items), len(users)])
        for block in reversed(blocks):
            s_items = block.propagate(s_items)
        return _Views(b_users, b_items, s_users, s_items)

    def _cached_batch_views(self, graph: BipartitePropagation, users: torch.Tensor,
                            items: torch.Tensor) -> _Views:
        """Views of the distinct `users` and `items` with historical neighbours
        (`neighbour_cache`): z is fresh (with gradient) for the batch's items and users only,
        users' profile tokens come from the precomputed norm R F_m, and the item graph reads
        every other item's z from `z_cache`. With the cache just refreshed and no RCA dropout
        the values equal `_batch_views`."""
        cfg = self.config
        b_users, b_items = self._batch_behavioural(graph, users, items)
        tokens = self._item_tokens(items)
        if cfg.uses_profiles:
            tokens = torch.cat([tokens, self._profile_tokens(users)])
        z = self._fuse(tokens)
        z_items, s_users = (z, None) if not cfg.uses_profiles else z.split([len(items), len(users)])
        if not cfg.item_graph:
            return _Views(b_users, b_items, s_users, z_items)
        blocks = multi_hop_blocks(self._csr("item_graph"), items, cfg.item_graph_layers)
        reached = blocks[-1].columns
        s_items = _with_fresh_rows(self.z_cache[reached], reached, items, z_items)
        for block in reversed(blocks):
            s_items = block.propagate(s_items)
        return _Views(b_users, b_items, s_users, s_items)

    def _profile_tokens(self, users: torch.Tensor) -> torch.Tensor:
        """Users' profile tokens (norm R F_m)_u W_m + rowsum_u b_m from the precomputed
        first factor: (n, M d)."""
        rowsum = self.profile_rowsum[users]
        return torch.cat([nn.functional.linear(getattr(self, _profile_feature_name(m))[users],
                                               projection.weight) + rowsum * projection.bias
                          for m, projection in zip(self.modalities, self.projections)], dim=1)

    def _contrastive_rows(self, n: int, device: torch.device) -> torch.Tensor | None:
        """[design, scale] At most `cl_max_rows` of n InfoNCE rows, distinct, drawn from the
        trainer's generator (None: every row, the method)."""
        cap = self.config.cl_max_rows
        if cap == 0 or n <= cap:
            return None
        if self._cl_generator is None:  # a loss outside the trainer (tests)
            self._cl_generator = torch.Generator().manual_seed(torch.initial_seed())
        rows = torch.randperm(n, generator=self._cl_generator)[:cap]
        return rows.sort().values.to(device)

    def _semantic(self, s: torch.Tensor | None, side: str) -> torch.Tensor | None:
        """The semantic view as added to the behavioural one: L2-normalised
        (`normalize_semantic`), times a learned scalar per side (`learn_semantic_scale`)."""
        if s is None:
            return None
        if self.config.normalize_semantic:
            s = nn.functional.normalize(s, dim=1)
        if self.config.learn_semantic_scale:
            s = s * self.semantic_scale[0 if side == "users" else -1]
        return s

    # ----------------------------------------------------------------- training

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        self._cl_generator = generator
        if self.config.edge_drop_rate > 0:
            self._train_graph = BipartitePropagation(
                degree_sensitive_edge_dropout(self._edges, self.config.edge_drop_rate,
                                              generator),
                self.n_users, self.user_embedding.device)
        else:
            self._train_graph = self._full_graph
        if self.config.item_graph and self.config.item_graph_source == "refined":
            # A function of the epoch number alone, so that a resumed run rebuilds at the
            # same epochs as an uninterrupted one (the buffer comes back with the checkpoint).
            if epoch > 0 and epoch % self.config.refine_every == 0:
                self._refine_item_graph()
            else:
                self._mix_refined_graph()
        if self.config.uses_neighbour_cache and self.config.item_graph:
            self.refresh_neighbour_cache()

    def refresh_neighbour_cache(self) -> None:
        self.z_cache.copy_(self._all_items_z())

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return self._loss_terms(users, pos_items, neg_items, restrict=True)

    def _loss_terms(self, users: torch.Tensor, pos_items: torch.Tensor,
                    neg_items: torch.Tensor, restrict: bool) -> dict[str, torch.Tensor]:
        """restrict=False computes every view in full first: the reference for tests."""
        cfg = self.config
        graph = self._train_graph if self._train_graph is not None else self._full_graph
        batch_users, user_pos = torch.unique(users, return_inverse=True)
        batch_items, item_pos = torch.unique(torch.cat([pos_items, neg_items]),
                                             return_inverse=True)
        if restrict and cfg.uses_neighbour_cache:
            views = self._cached_batch_views(graph, batch_users, batch_items)
        elif restrict and not cfg.uses_ui_propagation:
            views = self._batch_views(graph, batch_users, batch_items)
        else:
            full = self._full_views(graph)
            views = _Views(full.b_users[batch_users], full.b_items[batch_items],
                           None if full.s_users is None else full.s_users[batch_users],
                           full.s_items[batch_items])

        s_users = self._semantic(views.s_users, "users")
        s_items = self._semantic(views.s_items, "items")
        e_users = views.b_users if s_users is None else views.b_users + s_users
        e_items = views.b_items + s_items
        n_pos = len(pos_items)
        u, p, n = e_users[user_pos], e_items[item_pos[:n_pos]], e_items[item_pos[n_pos:]]
        terms = {"bpr": dot_bpr_loss(u, p, n)}
        if cfg.reg_weight > 0:
            terms["reg"] = cfg.reg_weight * emb_loss(
                self.user_embedding[users], self.item_embedding[pos_items],
                self.item_embedding[neg_items])
        if cfg.uses_contrastive:
            # distinct positive items: their rows among the sorted batch items
            positives = torch.searchsorted(batch_items, torch.unique(pos_items))
            kept = self._contrastive_rows(len(positives), positives.device)
            if kept is not None:
                positives = positives[kept]
            cl = symmetric_info_nce(views.b_items[positives], views.s_items[positives], cfg.tau)
            if views.s_users is not None:
                b_users, s_users = views.b_users, views.s_users
                kept = self._contrastive_rows(len(b_users), b_users.device)
                if kept is not None:
                    b_users, s_users = b_users[kept], s_users[kept]
                cl = cl + symmetric_info_nce(b_users, s_users, cfg.tau)
            terms["cl"] = cfg.lambda_cl * cl
        return terms

    # ----------------------------------------------------------------- scoring

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.item_graph and self.config.item_graph_source == "refined":
            self._mix_refined_graph()  # a restored checkpoint brings its own A_z
        views = self._full_views(self._full_graph)
        s_users = self._semantic(views.s_users, "users")
        s_items = self._semantic(views.s_items, "items")
        users = views.b_users if s_users is None else views.b_users + s_users
        return users, views.b_items + s_items

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_final, item_final = self.scoring_state()
        return dot_scores(user_final[users], item_final)


def _profile_matrix(train: sp.csr_matrix, norm: str) -> sp.csr_matrix:
    """D_u^-1 R (mean of the user's items) or D_u^-1/2 R D_i^-1/2; users without training
    items get an empty row (a zero profile)."""
    user_deg = np.asarray(train.sum(axis=1)).ravel()
    if norm == "mean":
        matrix = sp.diags(_safe_power(user_deg, -1.0)) @ train
    else:
        item_deg = np.asarray(train.sum(axis=0)).ravel()
        matrix = (sp.diags(_safe_power(user_deg, -0.5)) @ train
                  @ sp.diags(_safe_power(item_deg, -0.5)))
    return sp.csr_matrix(matrix, dtype=np.float32)


def _feature_name(modality: str) -> str:
    return f"{modality}_features"


def _profile_feature_name(modality: str) -> str:
    return f"{modality}_profile_features"


def _with_fresh_rows(cached: torch.Tensor, reached: torch.Tensor, items: torch.Tensor,
                     fresh: torch.Tensor) -> torch.Tensor:
    """Rows of `cached` (z of the sorted ids `reached`) with those of the batch's sorted
    `items` replaced by their `fresh` z, through which the gradient flows."""
    at = torch.searchsorted(reached, items).clamp(max=len(reached) - 1)
    hit = reached[at] == items
    return cached.index_put((at[hit],), fresh[hit].to(cached.dtype))


def _safe_power(values: np.ndarray, exponent: float) -> np.ndarray:
    out = np.zeros_like(values, dtype=np.float64)
    nonzero = values > 0
    out[nonzero] = values[nonzero].astype(np.float64) ** exponent
    return out


@register("crane_scalable")
class CraneScalable(Crane):
    """CRANE at its preset of scale switches (crane_scalable.yaml): the same model, other
    defaults."""
