"""Thin command-line front end: one module per verb group."""
