"""ganforge: a GAN research framework on PyTorch Lightning and Hydra."""

from importlib.resources import files
from pathlib import Path

__version__ = "0.1.0"

# the Hydra tree ships inside the package (the repository's top-level conf/, mapped in pyproject.toml)
CONFIG_PACKAGE = "pkg://ganforge.conf"  # what the entry points give hydra.main
CONFIG_DIR = Path(str(files("ganforge.conf")))  # the same tree as a directory (initialize_config_dir)
