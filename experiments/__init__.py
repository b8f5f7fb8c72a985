"""What genfam measures about itself, grouped by purpose: comparison/ (the cross-family comparison and
the budget ladder), benchmarks/ (speed, FLOPs, evaluation cost), probes/ (where a step's time goes, kernel
by kernel), studies/ (one-family likelihood and sample studies, the hyperparameter sweep); results/ holds
what they wrote that the docs cite."""
