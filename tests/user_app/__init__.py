"""A user's app, as docs/how-to/testing.md shows it: app.py and realtime.yaml are the page's
blocks (tests/test_testing_helper.py checks that they are the same)."""
