"""starlabels.models"""
