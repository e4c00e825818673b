"""Wire models of Tollgate's public API."""
