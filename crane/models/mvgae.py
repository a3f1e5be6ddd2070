"""MVGAE (Yi et al., IEEE TMM 2021, "Multi-Modal Variational Graph Auto-Encoder for
Recommendation Systems"), as implemented in MMRec (enoche/MMRec, src/models/mvgae.py;
MVGAE.yaml and overall.yaml for the fixed values).

Three encoders, one per modality present (image, text) and a "collaborative" one, each a GCN
over the user-item graph whose input is [preference; Linear(features) to 128], rows
L2-normalised; the collaborative encoder's "features" are a fixed random item table of
embedding_size columns. A convolution (MMRec's BaseModel, torch_geometric's MessagePassing
with aggr "mean" and self-loops) is

    conv(x) = dropout_0.1(normalize(mean over {v} and v's neighbours of (x @ W) + b))

and an encoder applies n_layers hidden layers x <- leaky_relu(g(leaky_relu(conv(x)))), then
two heads, each g(leaky_relu(conv(x))) + leaky_relu(linear(x)): the mean mu and the log
variance logvar of a Gaussian per node. The modality posteriors are fused by a product of
experts (precision-weighted: 1 / (exp(logvar) + 1e-8)), and the result is fused with the
collaborative posterior the same way.

Loss per batch (users, positives, negatives), summed over the fused posterior and each
encoder's own: recon(z) + beta * KL, where z = mu + 0.1 * exp(logvar / 2) * N(0, 1)
(logvar clamped at 10), KL = -0.5 * mean over nodes of sum(1 + logvar - mu^2 - exp(logvar))
over all U + N nodes, and

    recon(z) = -sum over the batch of log2 sigmoid(s_pos - s_neg),
    s_pos = sig(z_u) . sig(z_pos),  s_neg = sig(z_u) . sig(z_neg)

(sig is the sigmoid MMRec applies for Amazon data, its only branch; s_neg is the authors'
"hardest of the user's negatives", with the sampler's one negative per user that negative).
Scores: the mean, sigmoid(fused mu)_u . sigmoid(fused mu)_i.

Random draws: the dropout masks of every convolution and the four standard normal tables of
the reparametrisations come from torch's global generator on the model's device (the run's
seed fixes them), drawn by `draw_noise` and passed to `loss_with_noise`, so that a test can
give the same draws to a transcription of MMRec.

What is trained, as in MMRec: the Linears and the convolutions' weights and biases. The
collaborative item table and each encoder's user `preference` are plain tensors there
(`nn.init.xavier_normal_(torch.rand(...))`, not `nn.Parameter`), never seen by the optimizer:
here they are buffers, drawn with the same initialisation and saved with the model.

Deliberate differences from MMRec. Three lines of MMRec's loss break it; each is written
as in the authors' code (jing-1/MVGAE, Model.py), which MMRec's file follows otherwise:
- Items are graph nodes U..U+N-1: MMRec indexes z with the batch's raw item ids (0..N-1),
  i.e. with *user* rows (its MMGCN and GRCN add n_users; the authors' data numbers items
  after users). Here positives and negatives are read at their item nodes.
- No sigmoid on s_pos and s_neg: MMRec decodes with `sigmoid=True` (the authors with
  False), a sigmoid of a dot product of two sigmoid vectors, about d / 4 = 16 at d = 64,
  which float32 rounds to 1.0 for positive and negative alike: the reconstruction term is
  B to float precision and its gradient a millionth of the KL's (tests/models/test_mvgae.py).
- s_neg is the user's own negative: the authors take the hardest of each user's K
  negatives, (B, K) indices; MMRec, given (B,) negatives, repeats each user B times and
  broadcasts, so every user's positive is pushed above the hardest of *all* the batch's
  negatives (of 2048 random items, the hardest is typically one the user likes); on our
  synthetic styled data it then stays at chance.
- MMRec scores with `result_embed`, the sigmoid(fused mu) kept by the last training
  forward, i.e. with training-mode dropout and the parameters before the last optimizer
  step; here scores are computed in eval mode (no dropout) from the current parameters.
- MMRec requires both image and text; here the content product of experts fuses whichever
  modalities the dataset has (one expert: its own posterior, up to the 1e-8), and the loss
  has one term per encoder present.
- The mean aggregation is a constant sparse product with (D + I)^-1 (A + I) over the
  bipartite adjacency A (torch_geometric's scatter-mean over the same edges plus
  self-loops); log2 sigmoid is logsigmoid / ln 2 (the same values, no underflow).
- MMRec's `linear_layer1` and `linear_layer2` compute an output that `concate = False`
  discards, and the layer-2 modules exist even with one layer: those are not built here
  (no effect on any value). n_layers is 1 or 2: MMRec's encoder has no third hidden layer,
  and with 0 its 128-wide input meets a 64-wide head.

Memory: the graph holds 2E + U + N nonzeros; each encoder keeps (U + N) x 128 and a few
(U + N) x embedding_size activations and dropout masks. No U x U or N x N object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.ops.propagation import SquareGraph
from crane.ops.scores import dot_scores
from crane.ops.sparse import to_torch_sparse

LATENT_WIDTH = 128       # MMRec's dim_latent of every encoder
DROPOUT = 0.1            # BaseModel.update
NOISE_SCALE = 0.1        # reparametrize: mu + N(0, 1) * 0.1 * std
MAX_LOGVAR = 10.0
EXPERT_EPS = 1e-8        # ProductOfExperts
COLLABORATIVE = "collaborative"

Posterior = tuple[torch.Tensor, torch.Tensor]  # (mu, logvar), each (U + N, d)


@dataclass(frozen=True)
class MVGAEConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    n_layers: int = hparam(at_least=1, at_most=2)
    beta: float = hparam(at_least=0)


@dataclass
class Noise:
    """The random draws of one training step: per encoder, the keep masks of its
    convolutions in order (hidden layers, mu head, logvar head); per posterior ("fused" and
    each encoder), a standard normal (U + N, d) table."""

    keep: dict[str, list[torch.Tensor]]
    normal: dict[str, torch.Tensor]


def mean_with_self_loops(train: sp.csr_matrix) -> sp.csr_matrix:
    """(D + I)^-1 (A + I) of the bipartite graph A = [[0, R], [R^T, 0]]: row v averages v
    and its neighbours."""
    n_nodes = sum(train.shape)
    adjacency = sp.bmat([[None, train], [train.T, None]], format="csr", dtype=np.float32)
    adjacency = (adjacency + sp.identity(n_nodes, dtype=np.float32, format="csr")).tocsr()
    count = np.asarray(adjacency.sum(axis=1)).ravel()
    return (sp.diags(1.0 / count) @ adjacency).tocsr().astype(np.float32)


class MeanConv(nn.Module):
    """MMRec's BaseModel (aggr "mean"): x @ W averaged over each node and its neighbours,
    plus a bias, L2-normalised, then dropout (its mask given)."""

    def __init__(self, width_in: int, width_out: int, device: torch.device):
        super().__init__()
        self.weight = nn.Parameter(
            nn.init.xavier_normal_(torch.empty(width_in, width_out, device=device)))
        bound = 1.0 / math.sqrt(width_in)  # torch_geometric's uniform(in_channels, bias)
        self.bias = nn.Parameter(
            nn.init.uniform_(torch.empty(width_out, device=device), -bound, bound))

    def forward(self, x: torch.Tensor, graph: SquareGraph,
                keep: torch.Tensor | None) -> torch.Tensor:
        out = F.normalize(graph(x @ self.weight) + self.bias)
        if keep is None:
            return out
        return out * keep * (1.0 / (1.0 - DROPOUT))


def xavier_linear(width_in: int, width_out: int, device: torch.device) -> nn.Linear:
    linear = nn.Linear(width_in, width_out, device=device)
    nn.init.xavier_normal_(linear.weight)
    return linear


class Head(nn.Module):
    """mu or logvar: g(leaky_relu(conv(x))) + leaky_relu(linear(x))."""

    def __init__(self, size: int, device: torch.device):
        super().__init__()
        self.conv = MeanConv(size, size, device)
        self.linear = xavier_linear(size, size, device)
        self.gate = xavier_linear(size, size, device)

    def forward(self, x: torch.Tensor, graph: SquareGraph,
                keep: torch.Tensor | None) -> torch.Tensor:
        return self.gate(F.leaky_relu(self.conv(x, graph, keep))) + F.leaky_relu(self.linear(x))


class VariationalEncoder(nn.Module):
    """MMRec's GCN (concate False, dim_latent 128): a Gaussian posterior per node."""

    def __init__(self, n_users: int, feature_width: int, size: int, n_layers: int,
                 device: torch.device):
        super().__init__()
        preference = nn.init.xavier_normal_(torch.rand((n_users, LATENT_WIDTH), device=device))
        self.register_buffer("preference", preference)  # not trained in MMRec
        self.mlp = nn.Linear(feature_width, LATENT_WIDTH, device=device)
        nn.init.xavier_normal_(self.mlp.weight)
        self.convs = nn.ModuleList()
        self.gates = nn.ModuleList()
        for layer in range(n_layers):
            self.convs.append(MeanConv(LATENT_WIDTH if layer == 0 else size, size, device))
            # MMRec re-initialises g_layer1's weight, not g_layer2's
            self.gates.append(xavier_linear(size, size, device) if layer == 0
                              else nn.Linear(size, size, device=device))
        self.mu = Head(size, device)
        self.logvar = Head(size, device)

    def forward(self, features: torch.Tensor, graph: SquareGraph,
                keep: list[torch.Tensor] | None) -> Posterior:
        keep = keep or [None] * (len(self.convs) + 2)
        x = F.normalize(torch.cat([self.preference, self.mlp(features)]))
        for conv, gate, mask in zip(self.convs, self.gates, keep):
            x = F.leaky_relu(gate(F.leaky_relu(conv(x, graph, mask))))
        return self.mu(x, graph, keep[-2]), self.logvar(x, graph, keep[-1])


def product_of_experts(posteriors: list[Posterior]) -> Posterior:
    """The Gaussian product: precision-weighted mean, log of the inverse total precision."""
    mu = torch.stack([p[0] for p in posteriors])
    precision = 1.0 / (torch.exp(torch.stack([p[1] for p in posteriors])) + EXPERT_EPS)
    total = precision.sum(dim=0)
    return (mu * precision).sum(dim=0) / total, torch.log(1.0 / total)


def reparametrize(posterior: Posterior, normal: torch.Tensor) -> torch.Tensor:
    mu, logvar = posterior
    return mu + normal * NOISE_SCALE * torch.exp(0.5 * logvar.clamp(max=MAX_LOGVAR))


def kl_divergence(posterior: Posterior) -> torch.Tensor:
    """KL to N(0, I): mean over nodes of the per-node sum."""
    mu, logvar = posterior
    logvar = logvar.clamp(max=MAX_LOGVAR)
    return -0.5 * torch.mean(torch.sum(1 + logvar - mu.square() - logvar.exp(), dim=1))


def reconstruction_loss(z: torch.Tensor, users: torch.Tensor, pos_nodes: torch.Tensor,
                        neg_nodes: torch.Tensor) -> torch.Tensor:
    """-sum log2 sigmoid(s_pos - s_neg) over the batch, scores of sigmoid(z) rows."""
    user_e, pos_e, neg_e = (torch.sigmoid(z[rows]) for rows in (users, pos_nodes, neg_nodes))
    pos = (user_e * pos_e).sum(dim=1)
    neg = (user_e * neg_e).sum(dim=1)
    return -F.logsigmoid(pos - neg).sum() / math.log(2.0)


@register("mvgae")
class MVGAE(Recommender):
    config_class = MVGAEConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size, n_layers = self.config.embedding_size, self.config.n_layers
        self.modalities = self.feature_modalities(data)
        self.encoders = nn.ModuleDict()
        for modality in self.modalities:
            table = data.feature_tensor(modality)
            self.register_buffer(f"features_{modality}", table, persistent=False)
            self.encoders[modality] = VariationalEncoder(self.n_users, table.shape[1], size,
                                                         n_layers, self.device)
        collaborative = nn.init.xavier_normal_(
            torch.rand((self.n_items, size), device=self.device))
        self.register_buffer(f"features_{COLLABORATIVE}", collaborative)  # not trained in MMRec
        self.encoders[COLLABORATIVE] = VariationalEncoder(self.n_users, size, size, n_layers,
                                                          self.device)
        graph = mean_with_self_loops(data.train_matrix())
        self.graph = SquareGraph(to_torch_sparse(graph, self.device),
                                 to_torch_sparse(graph.T, self.device))

    def features(self, name: str) -> torch.Tensor:
        return getattr(self, f"features_{name}")

    def draw_noise(self) -> Noise:
        """One training step's draws, from torch's global generator."""
        shape = (self.n_users + self.n_items, self.config.embedding_size)
        n_convs = self.config.n_layers + 2
        keep = {name: [torch.rand(shape, device=self.device) >= DROPOUT for _ in range(n_convs)]
                for name in self.encoders}
        normal = {name: torch.randn(shape, device=self.device)
                  for name in ("fused", *self.encoders)}
        return Noise(keep, normal)

    def encode(self, noise: Noise | None) -> dict[str, Posterior]:
        """Each encoder's posterior (dropout masks from `noise`; none without)."""
        return {name: encoder(self.features(name), self.graph,
                              noise.keep[name] if noise is not None else None)
                for name, encoder in self.encoders.items()}

    def fuse(self, posteriors: dict[str, Posterior]) -> Posterior:
        """Product of the modality experts, then of that with the collaborative one."""
        content = product_of_experts([posteriors[m] for m in self.modalities])
        return product_of_experts([content, posteriors[COLLABORATIVE]])

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        noise = self.draw_noise() if self.training else None
        return self.loss_with_noise(users, pos_items, neg_items, noise)

    def loss_with_noise(self, users: torch.Tensor, pos_items: torch.Tensor,
                        neg_items: torch.Tensor, noise: Noise | None) -> dict[str, torch.Tensor]:
        """The loss with the given draws; without (eval mode, as MMRec): no dropout, z = mu."""
        posteriors = self.encode(noise)
        posteriors = {"fused": self.fuse(posteriors), **posteriors}
        pos_nodes, neg_nodes = pos_items + self.n_users, neg_items + self.n_users
        recon = kl = 0.0
        for name, posterior in posteriors.items():
            z = posterior[0] if noise is None else reparametrize(posterior, noise.normal[name])
            recon = recon + reconstruction_loss(z, users, pos_nodes, neg_nodes)
            kl = kl + kl_divergence(posterior)
        return {"recon": recon, "kl": self.config.beta * kl}

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """sigmoid of the fused mean (no dropout, no sampling), split into users and items."""
        embedding = torch.sigmoid(self.fuse(self.encode(None))[0])
        return embedding[:self.n_users], embedding[self.n_users:]

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self.scoring_state()
        return dot_scores(user_all[users], item_all)
