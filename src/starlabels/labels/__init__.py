"""starlabels.labels"""
