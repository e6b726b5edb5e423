"""The HTTP layer: retry, budget, breaker and cache transports, and the clients."""
