"""The Hydra config tree, shipped inside the package as ``ganforge.conf`` (``pkg://ganforge.conf``)."""
