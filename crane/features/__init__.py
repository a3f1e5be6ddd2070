"""Item features: one float32 matrix per (dataset, modality, encoder), rows aligned with item ids.

- `text`: sentence-transformers over the item text (MMRec's recipe; MiniLM bundled offline).
- `image_fetch`: downloads item images into the raw image cache (resumable, never fatal).
- `image_clip`, `image_histogram`: image encoders over the cache (open-clip; a weight-free
  colour histogram for the offline demo).
- `legacy`: the literature's 4096-d `image_features_<Cat>.b` vectors, streamed.
- `mmrec`: an MMRec dataset folder's `<modality>_feat.npy`, taken as is.
- `extract`: picks the encoder from its config, imputes missing rows, checks, writes the folder.
- `checks`: the share of items without input (`max_missing_share`) and degenerate matrices.
- `store`: the feature folder (`features.npy` + `manifest.json`) and its content hash.

The package imports none of its modules: a training job reads features through `store`
alone, so its computed code inputs (crane/code_inputs.py) leave the encoders out.
"""
