"""Analysis: plots of results and comparison reports."""
