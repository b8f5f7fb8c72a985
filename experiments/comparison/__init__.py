"""The cross-family comparison at one budget (compare), the budget ladder (ladder), and their tables,
plots and trade-off curves (docs/comparison.md)."""
