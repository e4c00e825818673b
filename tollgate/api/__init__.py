"""Thin routes: read the request, call a service, render JSON, SSE or an error."""
