"""``watchkeeper ui``: a read-only web page of the fleet, rendered on the server as plain
HTML with inline CSS and SVG (no JavaScript), so it runs anywhere a browser does."""
