"""The sans-I/O core, stepped by hand."""
