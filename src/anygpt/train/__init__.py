"""Trainers: one module per model we train here, each with `main(argv)` for `anygpt train NAME`."""
