"""The typed request, each default declared once; the official worker's shape as an adapter."""
