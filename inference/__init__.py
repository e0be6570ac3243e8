"""Using a trained ScratchLM model: terminal chat, an OpenAI-compatible server, and export to GGUF."""
