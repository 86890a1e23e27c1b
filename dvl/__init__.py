"""dvl: deep visual learning — classic and efficient CNNs in Flax, exact about
their cost, with a compound-scaling search on top."""
