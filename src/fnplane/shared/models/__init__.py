"""Wire models (pydantic) shared by the planes, the SDK and the CLI."""
