"""``teacherforge ui``: review and debug the event log in a browser; every human decision is an event."""
