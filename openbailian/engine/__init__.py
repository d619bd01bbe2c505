"""The application engine: builds the model's context, calls the model, emits events.

It knows nothing of HTTP; ``openbailian.api`` renders its events.
"""
