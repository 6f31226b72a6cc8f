"""Speed against the plain PyTorch way: `ganforge bench` (`speed`), the plain loops of the same networks
(`plain_loop`), and the results files the benchmarks merge into (`results`)."""
