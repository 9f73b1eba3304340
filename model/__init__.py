"""Everything about the network: protocol, loading, engine, kernels, training."""
