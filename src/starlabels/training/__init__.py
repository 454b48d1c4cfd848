"""starlabels.training"""
