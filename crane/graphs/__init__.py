"""Graphs built from the training split and from item features.

- `user_item`: the normalised bipartite adjacency (LightGCN and every graph model).
- `item_knn`: item-item kNN graphs from features, built in row chunks, cached by content hash
  (the workflow's graph jobs write the cache; training reads it).
- `user_user`: users' top-k co-interaction neighbours (DualGNN, DRAGON, COHESION), sparse.
- `item_co_interaction`: items sharing at least two training users, top k per item (DA-MRS).
- `plan`: which kNN graphs the study's runs read, so that the graph jobs build exactly those
  (no torch: the workflow imports it to plan its jobs).
"""
