"""What differs between GAN tasks (config group ``task``): G's input, what D judges, extra G terms,
sample grids and metrics. The D/G alternation itself lives only in :class:`ganforge.module.GANModule`."""
