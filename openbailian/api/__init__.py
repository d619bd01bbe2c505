"""The HTTP layer: routes, wire schemas, rendering. Nothing below it imports it."""
