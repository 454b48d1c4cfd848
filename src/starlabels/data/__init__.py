"""starlabels.data"""
