"""Caption translation backends, language id and the translation cache."""
