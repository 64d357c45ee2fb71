"""Built-in victims: multi-exit architectures, datasets, training, serving backends."""
