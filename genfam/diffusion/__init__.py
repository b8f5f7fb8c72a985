"""Denoising diffusion (DDPM / DDIM) as plain functions of arrays.

No network lives here: every function that needs one takes an
`eps_fn(x_t, t) -> eps` callable, so schedules, bounds and samplers can be
tested with analytic denoisers.

Time convention (as in Ho et al.'s code): arrays of length T are indexed by
t = 0 .. T-1, and index t stands for the paper's step t + 1. So index 0 is the
decoder step x_1 -> x_0 (L_0 in the paper's naming), indices 1 .. T-1 are the
Gaussian KL terms L_{t-1} of paper steps t = 2 .. T, and x_T is index T - 1.

  schedules  betas -> Schedule (alpha-bars, posterior coefficients, variances)
  process    q(x_t | x_0), q(x_{t-1} | x_t, x_0), x_0 / eps / reverse mean
  bound      the variational bound per example: prior KL, L_t terms, decoder
  importance its unbiased estimate from k importance-sampled t per example, the
             proposal learned from a pilot's per-term losses
  samplers   DDPM ancestral, DDIM (eta, S steps, spacings), guidance
"""
