"""What every trained method shares: its training options, the one fit loop, the checkpoint store, weight
loading and photometric augmentation."""
