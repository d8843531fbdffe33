"""Re-implemented VPR aggregation heads and training losses, checked against the official repositories."""
