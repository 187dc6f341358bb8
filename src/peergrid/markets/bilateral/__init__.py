"""The decentralized bilateral P2P market: the mechanism (`mechanism`, registered as
"bilateral"), its parameters (`params`), product differentiation (`differentiation`), the trading
graph (`graph`), the decentralised iterations (`admm`) and the centralised reference optimum
(`reference`)."""
