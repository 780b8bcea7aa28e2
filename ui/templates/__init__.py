"""The UI's Jinja2 page templates (HTML, autoescaped); a package so the wheel ships them."""
