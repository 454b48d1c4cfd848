"""starlabels.losses"""
