"""PyTorch re-implementation of the official EMANet, for parity tests and benchmarks."""
