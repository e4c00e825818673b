"""The automatic router (``model: "auto"``): pick a model per prompt, the way published routers do.

- ``profile``: what was learned: K cluster centroids in the sentence-embedding space and, per model, a
  quality score for each cluster (JSON on disk).
- ``train``: learn a profile from labelled ``(prompt, model, correct?)`` rows: spherical k-means on the
  prompt embeddings, then per-cluster accuracy of each model shrunk toward its overall accuracy. Also the
  held-out evaluation (quality retained and cost saved against always using the strongest model) and the
  trainer command ``python -m tollgate.routing.auto.train``.
- ``select``: rank candidate models for one prompt vector: nearest cluster, then quality blended with
  price through ``cost_bias`` (0 = best quality, 1 = cheapest). Deterministic for the same input.

Everything here is pure (numpy only); embedding the prompt is the caller's job (``tollgate.local.embedder``
in production, any ``texts -> unit vectors`` function in tests).
"""
