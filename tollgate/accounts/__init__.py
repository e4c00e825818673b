"""Keys, balances, prices and usage: who may call, what it costs, what was spent."""
