"""Studies of one family or one estimator: the diffusion bound's importance sampling, the GAN's AIS and
BDMC likelihood checks, interpolations, caption grids, style transfer, and the hyperparameter sweep."""
