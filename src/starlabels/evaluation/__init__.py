"""starlabels.evaluation"""
