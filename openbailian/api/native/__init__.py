"""DashScope-native routes beside the app call: the knowledge API LlamaIndex's DashScope
integrations speak (``knowledge.py``)."""
