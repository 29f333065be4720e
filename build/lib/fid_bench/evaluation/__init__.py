"""Evaluation shared by every track: scores in, metrics and plots out."""
