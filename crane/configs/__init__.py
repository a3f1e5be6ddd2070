"""Configuration files shipped inside the library (package data).

- `config.schema.yaml`: the JSON schema every workflow config is validated against
  (crane.config.validate_config);
- `models/<model>.yaml`: each model's default hyper-parameters, grid, trainer settings it
  sets (`training:`), and for CRANE its ablation variants and sensitivity sweeps
  (crane.tuning.load_model_config).

They are found next to this module, never through a checkout's folders, so an installed
`crane` reads the same files as a source tree (tests/test_config.py builds a wheel and
checks that it contains them).
"""

from __future__ import annotations

from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent
SCHEMA_PATH = CONFIGS_DIR / "config.schema.yaml"
MODELS_DIR = CONFIGS_DIR / "models"
