"""POST /api/v1/apps/{app_id}/completion."""
