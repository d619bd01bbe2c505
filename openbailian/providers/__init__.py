"""Language models behind one protocol: ``stream(messages, options)``."""
