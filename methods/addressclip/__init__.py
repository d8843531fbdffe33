"""AddressCLIP (ECCV 2024) and the CLIP baselines of its paper."""
