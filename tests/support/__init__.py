"""Helpers shared by several test files (import them from here, never from a test file).

- :mod:`tests.support.models`: ``tiny_cache_root`` (the tiny-model cache, outside the checkout);
- :mod:`tests.support.proposals`: ``mock_proposals`` (a ``Proposals`` from plain lists),
  ``store_finished_run`` (one finished propose run with given results);
- :mod:`tests.support.propose`: images with coloured shapes, registering them, comparing runs;
- :mod:`tests.support.review`: a workspace with a filled review queue.
"""
