"""Which deployments may serve a request, and in what order."""
