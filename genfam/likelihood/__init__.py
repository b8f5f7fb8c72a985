"""The likelihood arithmetic the families share (docs/DESIGN.md, "Likelihood conventions").

`bits` converts nats to bits/dim and dequantizes K-level pixels, `discretized`
gives K-bin pixel likelihoods under continuous distributions (the VAE decoder,
DDPM's L_0, VDM's reconstruction term), and `ais` estimates the log-likelihood of a
decoder-based model by annealed importance sampling (the GAN). Families call
these in their losses and `log_likelihood`; `genfam.evaluation` only averages
what they return. Plain functions of arrays: no config, no devices, no files.
"""
