"""The ServerApp's work: the round loop (federated_run) and what it is made of: the strategy,
the clients of a round (roster, sampling, joined_clients), their replies folded in as they
arrive (replies, aggregation), the global model's way to the clients and into the run folder."""
