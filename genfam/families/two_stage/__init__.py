"""Two-stage text-to-image families: an autoencoder (stage 1, its own run) and a prior over its
codes (stage 2, a run that loads the stage-1 run as a frozen model through the loop)."""
