"""Graphs built from the training split and from item features.

- `user_item`: the normalised bipartite adjacency (LightGCN and every graph model).
- `item_knn`: item-item kNN graphs from features, built in row chunks, cached by content hash.
"""
