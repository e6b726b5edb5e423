"""Pure decisions and values: errors, token sets, policy, the state tables, health.

Nothing here reads a clock, sleeps, does I/O or imports another authpulse package;
time and randomness come in as arguments.
"""
