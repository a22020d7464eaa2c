"""The Faust worker: the only package that imports faust or mode."""
