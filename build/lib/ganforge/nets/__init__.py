"""Generators and discriminators, one module per architecture family."""
