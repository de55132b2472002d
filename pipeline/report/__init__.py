"""report.html (plots, galleries with thumbnails and reasons) and the pieces it is built from."""
