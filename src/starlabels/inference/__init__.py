"""starlabels.inference"""
