"""The evaluation's pieces: one way to judge every family.

`evaluate` averages each family's per-example bits/dim (or, for the models that
are not generative, its test metrics) over noise draws and test examples and
reports them with standard errors; `sample_quality` judges samples with the
frozen classifier and text encoders (FID / KID from `fid`, text agreement,
sampling speed); `images` tiles samples into the PNG grids the loop writes.
The per-example numbers themselves come from the families, through
`genfam.likelihood`.
"""
