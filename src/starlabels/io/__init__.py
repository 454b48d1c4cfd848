"""starlabels.io"""
