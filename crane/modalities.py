"""The item feature modalities a dataset may provide, in the order content models stack
them. Feature extraction, the models and the config checks all read this one tuple."""

MODALITIES = ("image", "text")
