"""Provider simulator: an upstream speaking OpenAI's chat-completions wire format, with fault injection."""

from tollgate.simulator.app import create_app
from tollgate.simulator.runner import SimServer, serve

__all__ = ["SimServer", "create_app", "serve"]
