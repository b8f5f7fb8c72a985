"""Models the evaluation and other families use, trained on the one loop: the domain classifier and
its noise-conditional variant, the contrastive text / image encoders (CLIP)."""
